// Verifies an Open Badges 3.0 credential with Digital Bazaar's verifier, offline.
// usage: node verify.mjs CREDENTIAL.json DID.json [CONTEXTS_DIR]
// The contexts are registrar's shipped ones (src/credential/contexts) unless given; the
// DID document is the one registrar serves. Nothing is fetched. Prints {verified, error};
// exits 0 only when the credential verifies.
import fs from 'node:fs';
import path from 'node:path';
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import didContext from 'did-context';
import multikeyContext from '@digitalbazaar/multikey-context';

const here = path.dirname(new URL(import.meta.url).pathname);
const [credFile, didFile, contextsDir = path.join(here, '../../src/credential/contexts')] =
  process.argv.slice(2);
const credential = JSON.parse(fs.readFileSync(credFile, 'utf8'));
const did = JSON.parse(fs.readFileSync(didFile, 'utf8'));
const shipped = (f) => JSON.parse(fs.readFileSync(path.join(contextsDir, f), 'utf8'));
const documents = new Map([
  ['https://www.w3.org/ns/credentials/v2', shipped('credentials-v2.jsonld')],
  ['https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json', shipped('ob-v3p0-3.0.3.jsonld')],
  [didContext.CONTEXT_URL, didContext.CONTEXT],
  [multikeyContext.CONTEXT_URL, multikeyContext.CONTEXT],
  [did.id, did],
]);
for (const vm of did.verificationMethod || []) {
  documents.set(vm.id, {'@context': did['@context'], ...vm});
}
const documentLoader = async (url) => {
  const document = documents.get(url);
  if (!document) throw new Error(`offline loader has no document for ${url}`);
  return {contextUrl: null, documentUrl: url, document};
};
const suite = new DataIntegrityProof({cryptosuite});
const result = await vc.verifyCredential({credential, suite, documentLoader});
const error = result.error ? String(result.error.errors?.map(e => e.message) ?? result.error.message ?? result.error) : null;
console.log(JSON.stringify({verified: result.verified, error}));
process.exit(result.verified ? 0 : 1);
