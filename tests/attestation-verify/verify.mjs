// Independent verification of openoes attestations, offline, with the
// Digital Bazaar stack: @digitalbazaar/vc (VC Data Model 2.0),
// @digitalbazaar/data-integrity with @digitalbazaar/eddsa-jcs-2022-cryptosuite
// (the proof), @digitalbazaar/security-document-loader (did:key and the
// bundled contexts) and @digitalbazaar/vc-bitstring-status-list (revocation,
// the status lists served from a static loader).
//
// Usage: node verify.mjs CASES.json
// CASES.json: {"issuer": "did:key:...", "statusLists": {url: credential},
//              "cases": [{"name": ..., "credential": {...}}]}
// Prints one JSON object: {"results": [{name, verified, proofVerified,
// revoked, statusChecked, trustedIssuer, errors}], "networkAttempts": [...]}.
//
// The network is cut off before anything runs: fetch, http(s), net, tls and
// dns all throw and are recorded, so a verification that needed the network
// fails and shows here.

import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {syncBuiltinESMExports} from 'node:module';
import net from 'node:net';
import tls from 'node:tls';

const networkAttempts = [];
function refuse(what) {
  return (...args) => {
    networkAttempts.push(`${what} ${String(args[0]?.href ?? args[0]?.host ?? args[0])}`);
    throw new Error(`network access refused (${what}): this verification is offline`);
  };
}
globalThis.fetch = async (...args) => refuse('fetch')(...args);
for (const [name, module] of [['http', http], ['https', https]]) {
  module.request = refuse(`${name}.request`);
  module.get = refuse(`${name}.get`);
}
net.connect = refuse('net.connect');
net.createConnection = refuse('net.createConnection');
tls.connect = refuse('tls.connect');
dns.lookup = refuse('dns.lookup');
syncBuiltinESMExports();

const vc = await import('@digitalbazaar/vc');
const {DataIntegrityProof} = await import('@digitalbazaar/data-integrity');
const {createVerifyCryptosuite} = await import('@digitalbazaar/eddsa-jcs-2022-cryptosuite');
const {securityLoader} = await import('@digitalbazaar/security-document-loader');
const {checkStatus} = await import('@digitalbazaar/vc-bitstring-status-list');

const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const loader = securityLoader();
for (const [url, credential] of Object.entries(input.statusLists)) {
  loader.addStatic(url, credential);
}
const documentLoader = loader.build();
const suite = new DataIntegrityProof({cryptosuite: createVerifyCryptosuite()});

function messages(error) {
  const out = [];
  const walk = e => {
    if(!e) {
      return;
    }
    if(Array.isArray(e)) {
      e.forEach(walk);
      return;
    }
    out.push(String(e.message ?? e));
    walk(e.errors);
    walk(e.cause);
  };
  walk(error);
  return out;
}

const results = [];
for (const {name, credential} of input.cases) {
  const result = await vc.verifyCredential({
    credential,
    suite,
    documentLoader,
    checkStatus: options => checkStatus({
      ...options,
      verifyBitstringStatusListCredential: true,
      verifyMatchingIssuers: true
    })
  });
  const errors = [
    ...messages(result.error),
    ...(result.results ?? []).flatMap(r => messages(r.error))
  ];
  // vc-bitstring-status-list answers verified: true for a readable list
  // even when the bit is set: the revocation is the entry's `status`.
  const statuses = result.statusResult?.results ?? [];
  const revoked = statuses.some(r => r.status === true);
  const statusChecked = statuses.length > 0 &&
    statuses.every(r => r.verified === true);
  // A did:key resolves by itself, so any key "verifies": which issuer is
  // trusted is the verifier's call. Ours: the issuer named in CASES.json.
  const issuer = typeof credential.issuer === 'object' ?
    credential.issuer.id : credential.issuer;
  const trustedIssuer = issuer === input.issuer;
  const proofVerified = (result.results ?? []).length > 0 &&
    result.results.every(r => r.verified === true);
  results.push({
    name,
    verified: result.verified === true && !revoked && trustedIssuer,
    proofVerified,
    revoked,
    statusChecked,
    trustedIssuer,
    errors
  });
}
process.stdout.write(JSON.stringify({results, networkAttempts}, null, 2) + '\n');
