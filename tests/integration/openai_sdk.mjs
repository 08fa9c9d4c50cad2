// openai_sdk.mjs - the official OpenAI Node SDK, unmodified, against
// `troop up` (driven by test_openai_sdk.sh, which starts a coordinator, an
// engine simulator, a worker and the proxy).  Checks what an app relies on:
//   - a chat completion without streaming (and the X-Troop-Job header);
//   - a streamed chat completion whose deltas arrive one by one, as the
//     engine produces them (the simulator paces TROOP_TOKENS_PER_SECOND);
//   - the model list;
//   - errors reaching the SDK as APIError with the right status and code.
//
// Environment: TROOP_UP_URL (http://127.0.0.1:PORT), TROOP_MODEL,
// TROOP_EXPECTED (the simulator's answer to PROMPT, asked directly),
// TROOP_PROMPT, TROOP_TOKENS_PER_SECOND, and optionally TROOP_POOR_UP_URL
// (a proxy whose account has no credits: 402).
// Prints "ok - ..." / "not ok - ..." lines; exits 1 on any failure.
import OpenAI from 'openai';
import { performance } from 'node:perf_hooks';

const base = `${process.env.TROOP_UP_URL}/v1`;
const model = process.env.TROOP_MODEL || 'llama3:8b';
const prompt = process.env.TROOP_PROMPT || 'hello from the sdk';
const expected = process.env.TROOP_EXPECTED;
const tps = Number(process.env.TROOP_TOKENS_PER_SECOND || '20');
const client = new OpenAI({ baseURL: base, apiKey: 'troop-test', maxRetries: 0, timeout: 30000 });

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failures++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

await check('chat completion without streaming', async () => {
  const { data, response } = await client.chat.completions
    .create({ model, messages: [{ role: 'user', content: prompt }] })
    .withResponse();
  assert(data.object === 'chat.completion', `object is ${data.object}`);
  const text = data.choices[0].message.content;
  assert(text === expected, `content ${JSON.stringify(text)} != ${JSON.stringify(expected)}`);
  const job = response.headers.get('x-troop-job');
  assert(job && job.length >= 16, `X-Troop-Job header missing (${job})`);
});

await check('streamed chat completion, deltas one by one', async () => {
  const stream = await client.chat.completions.create({
    model, stream: true, messages: [{ role: 'user', content: prompt }],
  });
  const arrivals = [];
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue; // the usage chunk
    const d = choice.delta?.content;
    if (d) {
      arrivals.push(performance.now());
      text += d;
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  assert(text === expected, `streamed ${JSON.stringify(text)} != ${JSON.stringify(expected)}`);
  assert(finish !== null, 'no finish_reason');
  assert(arrivals.length >= 4, `only ${arrivals.length} deltas`);
  // Paced at tps tokens per second, deltas relayed as they come arrive
  // about 1000/tps ms apart; a proxy that buffered the reply would hand
  // them over in one burst (no paced gap, a span near 0).  On a loaded
  // machine this process is descheduled now and then and reads several
  // deltas at once, so the margins are wide: a third of the gaps paced
  // (at least two), and the whole stream spread over 40% of its time.
  // Per-gap timing belongs in the benchmarks (bench/), not here.
  const gapMs = 1000 / tps;
  let paced = 0;
  for (let i = 1; i < arrivals.length; i++)
    if (arrivals[i] - arrivals[i - 1] >= gapMs * 0.25) paced++;
  const span = arrivals[arrivals.length - 1] - arrivals[0];
  assert(paced >= Math.max(2, Math.floor((arrivals.length - 1) / 3)),
    `only ${paced} of ${arrivals.length - 1} gaps between deltas show pacing (span ${span.toFixed(0)} ms)`);
  assert(span >= (arrivals.length - 1) * gapMs * 0.4,
    `deltas arrived within ${span.toFixed(0)} ms: buffered, not streamed`);
});

await check('model list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert(ids.includes(model), `models ${JSON.stringify(ids)} lack ${model}`);
  const one = await client.models.retrieve(model);
  assert(one.id === model, `retrieve gave ${one.id}`);
});

await check('unknown model is an APIError 404 model_not_found', async () => {
  try {
    await client.chat.completions.create({
      model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }],
    });
  } catch (e) {
    assert(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
    assert(e instanceof OpenAI.NotFoundError, `not a NotFoundError: ${e.constructor.name}`);
    assert(e.status === 404, `status ${e.status}`);
    assert(e.code === 'model_not_found', `code ${e.code}`);
    return;
  }
  throw new Error('no error thrown');
});

await check('streaming request for an unknown model throws before any chunk', async () => {
  try {
    const s = await client.chat.completions.create({
      model: 'no-such-model', stream: true, messages: [{ role: 'user', content: 'hi' }],
    });
    for await (const _ of s) { /* nothing */ }
  } catch (e) {
    assert(e instanceof OpenAI.APIError && e.status === 404, `got ${e}`);
    return;
  }
  throw new Error('no error thrown');
});

if (process.env.TROOP_POOR_UP_URL) {
  await check('no credits is an APIError 402 insufficient_credits', async () => {
    const poor = new OpenAI({ baseURL: `${process.env.TROOP_POOR_UP_URL}/v1`, apiKey: 'x',
      maxRetries: 0 });
    try {
      await poor.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
    } catch (e) {
      assert(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
      assert(e.status === 402, `status ${e.status}`);
      assert(e.code === 'insufficient_credits', `code ${e.code}`);
      assert(/price/.test(e.message), `message lacks the price: ${e.message}`);
      return;
    }
    throw new Error('no error thrown');
  });
}

process.exit(failures ? 1 : 0);
