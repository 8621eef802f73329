import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/** Layering (DESIGN.md rule 1): main → core → shared; renderer → shared; server → services → base → shared. */
const layer = (files, patterns) => ({ files, rules: { 'no-restricted-imports': ['error', { patterns }] } });

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'release/**', 'tests/e2e/screenshots/**', 'coverage/**', '**/*.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node }, ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  { files: ['renderer/**/*.{ts,tsx}'], languageOptions: { globals: { ...globals.browser } } },
  layer(['shared/**/*.ts'], [
    { group: ['**/electron/**', 'electron', 'node:*', 'fs', 'path', 'react', 'react-dom'], message: 'shared/ is pure TS: no Node, DOM, Electron or React imports.' },
  ]),
  layer(['electron/core/**/*.ts'], [
    { group: ['electron', '**/main/**', '**/preload/**', '**/renderer/**'], message: 'core never imports Electron, main/ or renderer/.' },
  ]),
  layer(['electron/core/services/**/*.ts'], [
    { group: ['fastify', '@fastify/*', '@grpc/*', '**/server/**'], message: 'services never see Fastify or gRPC objects (DESIGN.md rule 1).' },
  ]),
  layer(['electron/core/base/**/*.ts'], [
    { group: ['**/services/**', '**/server/**', 'fastify', '@grpc/*'], message: 'base is below services and server.' },
  ]),
  layer(['renderer/**/*.{ts,tsx}'], [
    { group: ['**/electron/**', 'electron', 'node:*'], message: 'the renderer talks to the core only through shared/client over HTTP.' },
  ]),
);
