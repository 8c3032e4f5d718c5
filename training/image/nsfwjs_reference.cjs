// Runs nsfwjs (the npm package, MobileNetV2 model, tfjs CPU backend) on raw 224x224 RGB images.
// usage: node nsfwjs_reference.cjs NPM_DIR PIXELS_FILE N
// PIXELS_FILE holds N*224*224*3 uint8 values (NHWC). Prints one JSON line: N arrays of the five
// class probabilities in nsfwjs's class order (Drawing, Hentai, Neutral, Porn, Sexy).
const fs = require('fs');
const [npmDir, pixelsFile, nStr] = process.argv.slice(2);
const req = (name) => require(require.resolve(name, { paths: [npmDir] }));
const tf = req('@tensorflow/tfjs');
const nsfwjs = req('nsfwjs');
const ORDER = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];

(async () => {
  console.info = () => {}; // nsfwjs prints a hosting hint through console.info
  await tf.setBackend('cpu');
  const model = await nsfwjs.load('MobileNetV2');
  const n = parseInt(nStr, 10);
  const buf = fs.readFileSync(pixelsFile);
  const size = 224 * 224 * 3;
  if (buf.length !== n * size) throw new Error(`expected ${n * size} bytes, got ${buf.length}`);
  const out = [];
  for (let i = 0; i < n; i++) {
    const img = tf.tensor3d(new Int32Array(buf.subarray(i * size, (i + 1) * size)), [224, 224, 3], 'int32');
    const top = await model.classify(img, 5);  // the public API; 224x224 input skips its resize
    img.dispose();
    const byName = Object.fromEntries(top.map((c) => [c.className, c.probability]));
    out.push(ORDER.map((c) => byName[c]));
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
