// The layers, bottom up: base (shared primitives) <- storage (SQL), protocol (bytes) <- agent
// (policy and composition). Simulators, the dev entry, bench and tests sit beside the product and
// may use it; nothing in the product may reach them, and no layer reaches up.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'base-is-the-bottom',
      comment: 'base/ holds shared primitives and imports nothing of the project.',
      severity: 'error',
      from: { path: '^base/' },
      to: { path: '^(storage|protocol|agent|simulator|dev|bench|test|scripts)/' },
    },
    {
      name: 'storage-knows-only-base',
      comment: 'storage/ knows SQL; it may import base/ and nothing else of ours.',
      severity: 'error',
      from: { path: '^storage/' },
      to: { path: '^(protocol|agent|simulator|dev|bench|test|scripts)/' },
    },
    {
      name: 'protocol-knows-only-base',
      comment: 'protocol/ knows bytes; it may import base/ and nothing else of ours.',
      severity: 'error',
      from: { path: '^protocol/' },
      to: { path: '^(storage|agent|simulator|dev|bench|test|scripts)/' },
    },
    {
      name: 'product-never-loads-dev-tools',
      comment: 'The shipped agent never loads simulators, the dev entry, bench or tests.',
      severity: 'error',
      from: { path: '^(base|storage|protocol|agent)/' },
      to: { path: '^(simulator|dev|bench|test|scripts)/' },
    },
    {
      name: 'simulators-stay-out-of-dev-entry',
      comment: 'Simulators are used by the dev entry, bench and tests, not the other way round.',
      severity: 'error',
      from: { path: '^simulator/' },
      to: { path: '^(dev|bench|test|scripts)/' },
    },
    {
      name: 'policy-below-runtime-console-cli',
      comment:
        'agent/policy/ holds the rules; the runtime, console and CLI use it, not the other way ' +
        'round. runtime/core.ts (the offline core handle the acquirer flows act on) is the one ' +
        'exception.',
      severity: 'error',
      from: { path: '^agent/policy/' },
      to: { path: '^agent/(console|cli)/|^agent/runtime/(?!core[.]ts$)' },
    },
    {
      name: 'cli-is-the-top',
      comment: 'agent/cli/ is the entry point; nothing else in the product imports it.',
      severity: 'error',
      from: { path: '^(base|storage|protocol|agent/(policy|runtime|console))/' },
      to: { path: '^agent/cli/' },
    },
    {
      name: 'conformance-kit-plays-only-a-terminal',
      comment:
        'The conformance kit (agent/conformance) judges acquirer hosts with the protocol code and ' +
        'the agent policy rules only: never the simulator (it would judge the simulator by itself), ' +
        'nor storage, the runtime, the console, the dev entry, bench or tests.',
      severity: 'error',
      from: { path: '^agent/conformance/' },
      to: { path: '^(simulator|storage|agent/runtime|agent/console|dev|bench|test)/' },
    },
    {
      name: 'no-circular-layers',
      severity: 'error',
      from: { path: '^(base|storage|protocol)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|protocol/generated)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
