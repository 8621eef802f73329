import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

/** The tray's per-service switches (Console.serviceControls) respect what depends on what. */
describe('service controls (tray)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  const control = (name: string) => {
    const svc = c.console.serviceControls().find((s) => s.name === name);
    if (!svc) throw new Error(`no service ${name}`);
    return svc;
  };

  it('stopping monitoring stops training first (its jobs hold monitoring\'s GPU locks), and says so', async () => {
    expect(control('training').running()).toBe(true);
    expect(await control('monitoring').stop()).toEqual(['training', 'monitoring']);
    expect(control('training').running()).toBe(false);
    expect(c.logs.some((l) => l.includes('stopped monitoring and what depends on it first'))).toBe(true);
    // training needs monitoring: starting it starts monitoring first
    expect(await control('training').start()).toEqual(['monitoring', 'training']);
    expect(control('monitoring').running()).toBe(true);
  });

  it('stopping the model library stops the engine and training first; a service without dependants stops alone', async () => {
    expect(await control('models').stop()).toEqual(['training', 'engine', 'models']);
    expect(await control('training').start()).toEqual(['models', 'engine', 'training']);
    expect(await control('runtime').stop()).toEqual(['runtime']);
    expect(await control('runtime').start()).toEqual(['runtime']);
    expect(await control('runtime').stop()).toEqual(['runtime']);
    expect(await control('runtime').stop()).toEqual([]);
  });
});
