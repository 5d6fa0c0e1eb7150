// Test credentials for the TLS figures, made at run time with the openssl CLI:
// a throwaway CA and a server certificate for IP:127.0.0.1 and DNS:localhost
// (ECDSA P-256), in a temporary directory that is removed afterwards.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CA_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = connpool bench CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

const SERVER_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
`;

const SERVER_EXTENSIONS = `basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
`;

/** @returns {{ ca: Buffer, key: Buffer, cert: Buffer }} */
export function makeCertificates() {
  const dir = mkdtempSync(join(tmpdir(), 'connpool-bench-'));
  const file = (name) => join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    writeFileSync(file('ca.cnf'), CA_CONFIG);
    writeFileSync(file('server.cnf'), SERVER_CONFIG);
    writeFileSync(file('server.ext'), SERVER_EXTENSIONS);
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    openssl('req', '-x509', '-new', '-key', 'ca.key', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-sha256', '-days', '2', '-out', 'ca.pem');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key');
    openssl('req', '-new', '-key', 'server.key', '-config', 'server.cnf', '-out', 'server.csr');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-sha256', '-days', '2',
      '-extfile', 'server.ext', '-out', 'server.pem');
    return { ca: readFileSync(file('ca.pem')), key: readFileSync(file('server.key')), cert: readFileSync(file('server.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
