#!/usr/bin/env node
// Entry of `npx hangar-agent`: the agent is TypeScript run by Node's own type stripping (Node 22.18+).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`hangar-agent needs Node.js 22.18 or newer (this is ${process.version}); run it through npx in this project, which brings one.`);
  process.exit(1);
}
const { main } = await import('../main.ts');
await main();
