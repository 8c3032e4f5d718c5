// Writes nsfwjs's bundled MobileNetV2 as a plain tfjs layers model: model.json + binary shards.
// usage: node nsfwjs_dump.cjs MODEL_DIR OUT_DIR   (MODEL_DIR = node_modules/nsfwjs/dist/models/mobilenet_v2)
// nsfwjs ships the JSON and the base64 weight shards wrapped in UMD JavaScript modules; requiring
// them in Node is the faithful way to get the bytes back out.
const fs = require('fs');
const path = require('path');
const [modelDir, outDir] = process.argv.slice(2);
const model = require(path.join(modelDir, 'model.min.js'));
for (const group of model.weightsManifest) {
  for (const p of group.paths) {
    const shard = require(path.join(modelDir, `${p}.min.js`));
    fs.writeFileSync(path.join(outDir, p), Buffer.from(shard, 'base64'));
  }
}
fs.writeFileSync(path.join(outDir, 'model.json'), JSON.stringify(model));
