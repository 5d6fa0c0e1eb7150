// Installs what the tests need besides Node and npm, where it is missing:
// openssl (test certificates) and nginx (the HTTP adapters' keep-alive and TLS
// tests). Uses apt-get when run as root on Debian or Ubuntu; otherwise it says
// what is missing, and the tests that need it fail with the same message.
import { execFileSync, spawnSync } from 'node:child_process';

const wanted = [
  { command: 'openssl', package: 'openssl' },
  { command: 'nginx', package: 'nginx-light' },
];

function has(command) {
  return spawnSync('/bin/sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command}`], { stdio: 'ignore' }).status === 0;
}

const missing = wanted.filter((tool) => !has(tool.command));
if (missing.length > 0) {
  const packages = missing.map((tool) => tool.package);
  const canInstall = process.getuid?.() === 0 && has('apt-get');
  if (canInstall) {
    console.log(`installing ${packages.join(', ')} for the tests`);
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } else {
    console.warn(`the tests need ${missing.map((tool) => tool.command).join(', ')}: install ${packages.join(', ')} (apt-get install -y ${packages.join(' ')})`);
  }
}
