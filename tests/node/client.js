// A Node.js client of lossd, from the .proto files alone (no generated code):
//   node client.js [host:port]        (default 127.0.0.1:50051, or LOSSD_GRPC_TARGET)
// calls lossd.v1.LossService/Compute and inference.GRPCInferenceService/ModelInfer, checks the
// numbers against values worked out by hand, prints one JSON line per call, exits 0 when all
// match (1 otherwise).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const TARGET = process.argv[2] || process.env.LOSSD_GRPC_TARGET || '127.0.0.1:50051';
const OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  includeDirs: [PROTOS] };

function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, OPTIONS));
}

function float32(values) {  // little-endian raw bytes, as both APIs carry tensors
  const buffer = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => buffer.writeFloatLE(v, i * 4));
  return buffer;
}

function fromFloat32(buffer) {
  const out = [];
  for (let i = 0; i < buffer.length; i += 4) out.push(buffer.readFloatLE(i));
  return out;
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10000);
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function close(actual, expected, what) {
  const ok = actual.length === expected.length &&
    actual.every((a, i) => Math.abs(a - expected[i]) <= 1e-6 * Math.max(1, Math.abs(expected[i])));
  console.log(JSON.stringify({ check: what, actual, expected, ok }));
  return ok;
}

async function main() {
  // mse of input [1, 2, 3] against target [1, 1, 1], mean: (0 + 1 + 4) / 3; d/dinput = 2(x - y)/3
  const input = [1, 2, 3];
  const target = [1, 1, 1];
  const loss = 5 / 3;
  const grad = [0, 2 / 3, 4 / 3];
  let ok = true;

  const lossd = load('lossd/v1/lossd.proto').lossd.v1;
  const native = new lossd.LossService(TARGET, grpc.credentials.createInsecure());
  const tensor = (values) => ({ dtype: 'FLOAT32', shape: [values.length], raw: float32(values) });
  const computed = await call(native, 'Compute', {
    loss: 'mse', grad: true, inputs: { input: tensor(input), target: tensor(target) },
    options: { reduction: { text: 'mean' } },
  });
  ok = close(fromFloat32(computed.loss.raw), [loss], 'lossd.v1 Compute loss') && ok;
  ok = close(fromFloat32(computed.grads.input.raw), grad, 'lossd.v1 Compute grad input') && ok;
  ok = computed.loss.dtype === 'FLOAT32' && ok;
  native.close();

  const inference = load('inference/grpc_predict_v2.proto').inference;
  const v2 = new inference.GRPCInferenceService(TARGET, grpc.credentials.createInsecure());
  const live = await call(v2, 'ServerLive', {});
  const ready = await call(v2, 'ModelReady', { name: 'mse' });
  ok = live.live && ready.ready && ok;
  const inferred = await call(v2, 'ModelInfer', {
    model_name: 'mse', id: 'node-1',
    parameters: { reduction: { string_param: 'mean' }, grad: { bool_param: true } },
    inputs: [{ name: 'input', datatype: 'FP32', shape: [3] },
      { name: 'target', datatype: 'FP32', shape: [3] }],
    raw_input_contents: [float32(input), float32(target)],
  });
  const outputs = {};
  inferred.outputs.forEach((o, i) => { outputs[o.name] = fromFloat32(inferred.raw_output_contents[i]); });
  ok = inferred.id === 'node-1' && inferred.outputs[0].datatype === 'FP32' && ok;
  ok = close(outputs.loss, [loss], 'V2 ModelInfer loss') && ok;
  ok = close(outputs.grad_input, grad, 'V2 ModelInfer grad_input') && ok;

  try {  // a user mistake is a clean status, not INTERNAL
    await call(v2, 'ModelInfer', { model_name: 'no_such_loss' });
    ok = false;
  } catch (err) {
    const clean = err.code === grpc.status.NOT_FOUND;
    console.log(JSON.stringify({ check: 'V2 unknown model', code: err.code, ok: clean }));
    ok = clean && ok;
  }
  v2.close();
  return ok;
}

main().then((ok) => process.exit(ok ? 0 : 1), (err) => {
  console.error(err);
  process.exit(1);
});
