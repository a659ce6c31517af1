// Runs a TFJS graph model (the original, unconverted model) with the pure-JS CPU backend.
// Used only by the tests to get reference outputs.
// usage: node run_tfjs.js <node_modules dir> <model.json> <input.f32> <d0,d1,...> <out dir>
// Writes <out dir>/<output name with ':' and '/' replaced by '_'>.f32 and a shapes.json.
const path = require('path');
const fs = require('fs');
const [nm, modelJson, inputFile, dims, outDir] = process.argv.slice(2);
const tf = require(path.join(nm, '@tensorflow/tfjs-core'));
require(path.join(nm, '@tensorflow/tfjs-backend-cpu'));
const tfc = require(path.join(nm, '@tensorflow/tfjs-converter'));

async function main() {
  await tf.setBackend('cpu');
  const m = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const dir = path.dirname(modelJson);
  const weightSpecs = [];
  const buffers = [];
  for (const group of m.weightsManifest) {
    for (const w of group.weights) weightSpecs.push(w);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const handler = tf.io.fromMemory({ modelTopology: m.modelTopology, weightSpecs, weightData,
    format: m.format, generatedBy: m.generatedBy, convertedBy: m.convertedBy,
    signature: m.signature });
  const model = await tfc.loadGraphModel(handler);
  const shape = dims.split(',').map(Number);
  const raw = fs.readFileSync(inputFile);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor(data, shape, 'float32');
  const names = Object.keys(m.signature.outputs);
  const outs = await model.executeAsync(x, names);
  const shapes = {};
  fs.mkdirSync(outDir, { recursive: true });
  for (let i = 0; i < names.length; i++) {
    const t = outs[i];
    const key = names[i].replace(/[:/]/g, '_');
    shapes[names[i]] = { file: key + '.f32', shape: t.shape };
    fs.writeFileSync(path.join(outDir, key + '.f32'), Buffer.from((await t.data()).buffer));
  }
  fs.writeFileSync(path.join(outDir, 'shapes.json'), JSON.stringify(shapes));
}
main().catch((e) => { console.error(e); process.exit(1); });
