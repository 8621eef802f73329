export * from './apiTypes.js';
export * from './consoleClient.js';
export * from './liveStream.js';
