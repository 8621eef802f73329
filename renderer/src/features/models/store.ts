import { createStore } from 'zustand/vanilla';
import type { CatalogEntry, DownloadInfo, LibraryFile, ModelInfo } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

export interface ModelsState {
  engine: Availability;
  library: Availability;
  error: string | null;
  models: ModelInfo[];
  files: LibraryFile[];
  catalog: CatalogEntry[];
  downloads: DownloadInfo[];
  busy: Record<string, boolean>;
  refresh(): Promise<void>;
  /** Polls only the downloads (each tick while one is active). */
  refreshDownloads(): Promise<void>;
  load(id: string): Promise<void>;
  unload(id: string): Promise<void>;
  /** Starts a download; returns a validation message instead when the URI is not acceptable. */
  download(uri: string): Promise<string | null>;
  cancel(id: string): Promise<void>;
}

/** `hf:owner/repo[:quant]` or an https URL (what the model library accepts). */
export function validateModelUri(uri: string): string | null {
  const u = uri.trim();
  if (!u) return 'Enter an hf: URI (hf:owner/repo:quant) or an https:// URL of a .gguf file.';
  if (/^hf:[\w.-]+\/[\w.-]+(:[\w.-]+)?(\/[\w./-]+)?$/i.test(u)) return null;
  try {
    const url = new URL(u);
    if (url.protocol === 'https:' || url.protocol === 'http:') return null;
  } catch {
    // fall through
  }
  return 'Not a model URI: use hf:owner/repo[:quant] or an https:// URL.';
}

export const ACTIVE_DOWNLOAD = new Set(['queued', 'downloading', 'verifying']);

export function createModelsStore(client: ConsoleClient) {
  return createStore<ModelsState>()((set, get) => {
    const act = async (key: string, fn: () => Promise<unknown>) => {
      set({ busy: { ...get().busy, [key]: true }, error: null });
      try {
        await fn();
      } catch (err) {
        set({ error: errorText(err) });
      } finally {
        set({ busy: { ...get().busy, [key]: false } });
      }
      await get().refresh();
    };
    return {
      engine: 'unknown',
      library: 'unknown',
      error: null,
      models: [],
      files: [],
      catalog: [],
      downloads: [],
      busy: {},
      async refresh() {
        const [models, catalog, files, downloads] = await Promise.allSettled([client.models(), client.catalog(), client.libraryFiles(), client.downloads()]);
        const patch: Partial<ModelsState> = {};
        if (models.status === 'fulfilled') Object.assign(patch, { models: models.value.models, engine: 'ok' });
        else patch.engine = classify(models.reason).availability;
        const lib = [catalog, files, downloads];
        if (lib.every((r) => r.status === 'rejected') && downloads.status === 'rejected') {
          patch.library = classify(downloads.reason).availability;
        } else {
          patch.library = 'ok';
          if (catalog.status === 'fulfilled') patch.catalog = catalog.value;
          if (files.status === 'fulfilled') patch.files = files.value.files;
          if (downloads.status === 'fulfilled') patch.downloads = downloads.value;
        }
        set(patch);
      },
      async refreshDownloads() {
        try {
          set({ downloads: await client.downloads() });
        } catch {
          // the next full refresh reports it
        }
      },
      load: (id) => act(`load:${id}`, () => client.loadModel(id)),
      unload: (id) => act(`unload:${id}`, () => client.unloadModel(id)),
      async download(uri) {
        const invalid = validateModelUri(uri);
        if (invalid) return invalid;
        try {
          const d = await client.startDownload(uri.trim());
          set({ downloads: [...get().downloads.filter((x) => x.id !== d.id), d] });
          return null;
        } catch (err) {
          return errorText(err);
        }
      },
      cancel: (id) => act(`cancel:${id}`, () => client.cancelDownload(id)),
    };
  });
}
export type ModelsStore = ReturnType<typeof createModelsStore>;
