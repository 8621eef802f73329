import { Type, type Static } from '@sinclair/typebox';

/**
 * Training dataset wire schemas (`/api/v1/training/datasets`, an extension of contract §4).
 * Uploaded datasets live in `DATA_DIR/datasets/`; a training request names one as
 * `datasetPath: "datasets/<name>"` (or by the absolute `path` the listing gives).
 */

export const DatasetShape = Type.Union([Type.Literal('text'), Type.Literal('promptCompletion'), Type.Literal('chat')]);
export type DatasetShape = Static<typeof DatasetShape>;

export const DatasetFormat = Type.Union([Type.Literal('jsonl'), Type.Literal('json'), Type.Literal('text')]);
export type DatasetFormat = Static<typeof DatasetFormat>;

/** Valid rows per shape: `{"text"}`, `{"prompt","completion"}`, `{"messages":[...]}`. */
export const DatasetShapeCounts = Type.Object({
  text: Type.Integer(),
  promptCompletion: Type.Integer(),
  chat: Type.Integer(),
});
export type DatasetShapeCounts = Static<typeof DatasetShapeCounts>;

/** One uploaded dataset (`GET /api/v1/training/datasets`). */
export const DatasetSummary = Type.Object({
  /** File name inside `DATA_DIR/datasets/`. */
  name: Type.String(),
  /** Absolute path, usable as `datasetPath` of a training request. */
  path: Type.String(),
  format: DatasetFormat,
  /** Size in bytes. */
  size: Type.Integer(),
  /** Valid rows (a `.txt` file is one row). */
  rows: Type.Integer(),
  shapes: DatasetShapeCounts,
  sha256: Type.String(),
  /** ISO-8601 UTC. */
  modifiedAt: Type.String(),
  /** Bad rows; 0 for every uploaded dataset, which is validated on upload (a file copied in by hand may have some). */
  issueCount: Type.Integer(),
});
export type DatasetSummary = Static<typeof DatasetSummary>;

export const DatasetListResponse = Type.Object({ datasets: Type.Array(DatasetSummary) });
export type DatasetListResponse = Static<typeof DatasetListResponse>;

export const DatasetPreviewRow = Type.Object({
  /** Line (`.jsonl`) or item (`.json`) number, 1-based. */
  at: Type.Integer(),
  shape: DatasetShape,
  /** The row as plain text (chat as "role: content" lines), truncated. */
  text: Type.String(),
});
export type DatasetPreviewRow = Static<typeof DatasetPreviewRow>;

export const DatasetIssue = Type.Object({
  at: Type.Integer(),
  unit: Type.Union([Type.Literal('line'), Type.Literal('item'), Type.Literal('file')]),
  problem: Type.String(),
});
export type DatasetIssue = Static<typeof DatasetIssue>;

/** `GET /api/v1/training/datasets/{name}` and the response of an upload. */
export const DatasetDetails = Type.Intersect([
  DatasetSummary,
  Type.Object({
    preview: Type.Array(DatasetPreviewRow),
    /** The first 50 bad rows (see `issueCount` for all). */
    issues: Type.Array(DatasetIssue),
  }),
]);
export type DatasetDetails = Static<typeof DatasetDetails>;

export const DatasetNameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) }, { additionalProperties: false });
export type DatasetNameParams = Static<typeof DatasetNameParams>;
