import { describe, expect, it } from 'vitest';
import { explainTrainerCrash } from '../../../electron/core/services/training/trainingRun.js';

describe('trainer crash reasons', () => {
  it('explains llama.cpp graph-size assertions (as printed on CPU and on an H200) and nothing else', () => {
    const sched = '/home/runner/work/node-llama-cpp/node-llama-cpp/llama/llama.cpp/ggml/src/ggml-backend.cpp:1994: GGML_ASSERT((int)sched->hash_set.size >= graph->n_nodes + graph->n_leafs) failed';
    const cgraph = 'ggml.c:6870: GGML_ASSERT(cgraph->n_nodes < cgraph->size) failed';
    expect(explainTrainerCrash(sched)).toMatch(/training graph is larger than the trainer's graph budget.*TRAIN_GRAPH_FACTOR/);
    expect(explainTrainerCrash(cgraph)).toMatch(/TRAIN_GRAPH_FACTOR/);
    expect(explainTrainerCrash('CUDA error: the provided PTX was compiled with an unsupported toolchain.')).toMatch(/Set training\.gpu to "cpu", update the driver/);
    expect(explainTrainerCrash('GGML_ASSERT(ne0 % 32 == 0) failed')).toBeUndefined();
    expect(explainTrainerCrash(undefined)).toBeUndefined();
  });
});
