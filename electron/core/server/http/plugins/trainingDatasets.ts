import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DatasetDetails, DatasetListResponse, DatasetNameParams } from '../../../../../shared/contracts/datasets.js';
import { invalidRequest } from '../../../base/errors.js';
import type { DatasetLibrary } from '../../../services/training/datasetLibrary.js';
import type { Auth } from '../../auth.js';
import { settledFileStream } from '../multipartFile.js';

export interface TrainingDatasetsPluginOptions extends Record<string, unknown> {
  datasets: DatasetLibrary;
  auth: Auth;
}

const P = '/api/v1/training/datasets';

/**
 * Training datasets (an extension of contract §4): multipart upload into `DATA_DIR/datasets/`,
 * validated before it is kept, a listing and details with a preview. The `/api/v1` API-key rule
 * applies to reads and writes, checked before the body is read; errors use the engine envelope.
 */
export const trainingDatasetsPlugin: FastifyPluginAsync<TrainingDatasetsPluginOptions> = async (fastify, { datasets, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get(P, { onRequest: auth.apiKey, schema: { response: { 200: DatasetListResponse } } }, async () => ({ datasets: await datasets.list() }));

  app.get(`${P}/:name`, { onRequest: auth.apiKey, schema: { params: DatasetNameParams, response: { 200: DatasetDetails } } }, async (request) =>
    datasets.get(request.params.name),
  );

  // One file part (any field name, "file" by convention); its file name names the dataset.
  app.post(P, { onRequest: auth.apiKey, config: { multipart: true }, schema: { response: { 200: DatasetDetails } } }, async (request) => {
    const missing = () => invalidRequest('Send the dataset as multipart/form-data with one file part named "file"', [{ type: 'missing', field: 'file', description: 'no file part' }]);
    if (!request.isMultipart()) throw missing();
    // One byte over the limit is let through so the library sees it and answers 413.
    const part = await request.file({ limits: { fileSize: datasets.maxUploadBytes + 1, files: 1 }, throwFileSizeLimit: false });
    if (!part) throw missing();
    // Wrapped before anything is awaited: a body cut short before its closing boundary is a 400.
    return datasets.upload(part.filename, settledFileStream(part.file));
  });
};
