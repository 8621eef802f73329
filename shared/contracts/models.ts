import { Type, type Static } from '@sinclair/typebox';

/**
 * The model library's HTTP contract (`/api/v1/library/*`): model files on disk, imports,
 * downloads and the catalog. Engine envelope for errors (contract §1.3); camelCase bodies;
 * timestamps ISO-8601 UTC.
 */

/** A GGUF file in the models dir. */
export const ModelFileView = Type.Object({
  /** File name without `.gguf`. */
  id: Type.String(),
  path: Type.String(),
  sizeBytes: Type.Integer(),
  modifiedAt: Type.String({ description: 'ISO-8601 UTC' }),
  architecture: Type.Optional(Type.String()),
  contextLength: Type.Optional(Type.Integer()),
  /** `general.name` from the GGUF header. */
  displayName: Type.Optional(Type.String()),
  /** Why the file is unusable (e.g. the GGUF header does not parse). */
  error: Type.Optional(Type.String()),
});
export type ModelFileView = Static<typeof ModelFileView>;

export const ModelFileList = Type.Object({ dir: Type.String(), files: Type.Array(ModelFileView) });
export type ModelFileList = Static<typeof ModelFileList>;

export const FileIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 400 }) }, { additionalProperties: false });
export type FileIdParams = Static<typeof FileIdParams>;

/** `POST /api/v1/library/import`: copy a local file into the models dir. */
export const ImportRequest = Type.Object(
  {
    /** Absolute path of a GGUF file on this machine. */
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    /** Model id to store it under (default: the file name without `.gguf`). */
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type ImportRequest = Static<typeof ImportRequest>;

export const Sha256 = Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'hex sha256' });

/** `POST /api/v1/library/downloads`. */
export const DownloadRequest = Type.Object(
  {
    /** `hf:owner/repo[:quant][#rev]`, `hf:owner/repo/path/file.gguf[#rev]` or an https URL. */
    uri: Type.String({ minLength: 1, maxLength: 2048 }),
    /** Model id to save it as (default: the remote file name without `.gguf`). */
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    /** Expected sha256; Hugging Face files are checked against their LFS sha256 anyway. */
    sha256: Type.Optional(Sha256),
  },
  { additionalProperties: false },
);
export type DownloadRequest = Static<typeof DownloadRequest>;

export const DownloadStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('downloading'),
  Type.Literal('verifying'),
  Type.Literal('completed'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
export type DownloadStatus = Static<typeof DownloadStatus>;

/** One download, with live progress. */
export const DownloadView = Type.Object({
  id: Type.String({ description: 'dl-<uuid>' }),
  uri: Type.String(),
  /** The model id the file becomes. */
  name: Type.String(),
  status: DownloadStatus,
  /** Resolved source URL. */
  url: Type.String(),
  bytesDone: Type.Integer(),
  /** Null until the size is known. */
  bytesTotal: Type.Union([Type.Integer(), Type.Null()]),
  /** 0..1, null while the size is unknown. */
  progress: Type.Union([Type.Number(), Type.Null()]),
  /** Recent transfer speed (bytes per second, over the last few seconds). */
  speedBytesPerSecond: Type.Number(),
  /** Seconds left at the recent speed; null when unknown. */
  etaSeconds: Type.Union([Type.Number(), Type.Null()]),
  /** Expected sha256 (from the request or Hugging Face), or the verified one once completed. */
  sha256: Type.Union([Type.String(), Type.Null()]),
  /** Connection attempts so far (resumes count). */
  attempts: Type.Integer(),
  error: Type.Optional(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  finishedAt: Type.Optional(Type.String()),
});
export type DownloadView = Static<typeof DownloadView>;

export const DownloadList = Type.Object({ downloads: Type.Array(DownloadView) });
export type DownloadList = Static<typeof DownloadList>;

export const DownloadIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false });
export type DownloadIdParams = Static<typeof DownloadIdParams>;

/** One recommended model of `resources/model-catalog.json`. */
export const CatalogEntry = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    uri: Type.String(),
    quant: Type.String(),
    /** Approximate download size; the exact size and sha256 come from Hugging Face at download time. */
    sizeBytes: Type.Integer({ minimum: 1 }),
    license: Type.String(),
    parameters: Type.String(),
    contextLength: Type.Integer({ minimum: 1 }),
    description: Type.String(),
    homepage: Type.String(),
  },
  { additionalProperties: false },
);
export type CatalogEntry = Static<typeof CatalogEntry>;

export const Catalog = Type.Object({ models: Type.Array(CatalogEntry) }, { additionalProperties: false });
export type Catalog = Static<typeof Catalog>;
