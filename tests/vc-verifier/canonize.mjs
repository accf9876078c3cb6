import jsonld from 'jsonld';
import fs from 'fs';
import path from 'path';
// usage: node canonize.mjs DOC.json  -> its canonical N-Quads (RDFC-1.0), offline.
const here = path.dirname(new URL(import.meta.url).pathname);
const shipped = (f) => JSON.parse(fs.readFileSync(path.join(here, '../../src/credential/contexts', f)));
const contexts = {
  'https://www.w3.org/ns/credentials/v2': shipped('credentials-v2.jsonld'),
  'https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json': shipped('ob-v3p0-3.0.3.jsonld'),
};
const documentLoader = async (url) => {
  if (contexts[url]) return {contextUrl: null, documentUrl: url, document: contexts[url]};
  throw new Error('not offline: ' + url);
};
const doc = JSON.parse(fs.readFileSync(process.argv[2]));
const out = await jsonld.canonize(doc, {algorithm: 'RDFC-1.0', format: 'application/n-quads', documentLoader, safe: true});
process.stdout.write(out);
