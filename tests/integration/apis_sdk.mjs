// apis_sdk.mjs - the official SDKs of the OpenAI Responses API (npm
// `openai`, client.responses) and of the Anthropic Messages API (npm
// `@anthropic-ai/sdk`, client.messages), unmodified, against `troop up`
// (driven by test_apis_sdk.sh against the engine simulator, where the
// worker translates to chat completions, and by test_engine_llamacpp.sh
// against a real llama-server, which serves both APIs natively).
// Checks, streamed and not: the answer's text, usage, the event order of
// each API, the SDKs' stream helpers, and errors raised as each SDK's
// typed errors.
//
// Environment: TROOP_UP_URL, TROOP_MODEL, TROOP_EXPECTED (the answer the
// engine gives to TROOP_PROMPT; unset for a random-weight model, whose
// answer is only checked to be text), TROOP_PROMPT, TROOP_POOR_UP_URL
// (optional: a proxy whose account has no credits), TROOP_JOBS_FILE
// (optional: the X-Troop-Job ids of the answered requests are written
// there, one per line, for the settlement check), TROOP_NATIVE (set: the
// engine serves the APIs natively, so tools are not refused).
// Prints "ok - ..." / "not ok - ..." lines; exits 1 on any failure.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { appendFileSync } from 'node:fs';

const url = process.env.TROOP_UP_URL;
const model = process.env.TROOP_MODEL || 'llama3:8b';
const prompt = process.env.TROOP_PROMPT || 'hello from the sdk';
const expected = process.env.TROOP_EXPECTED;
const native = !!process.env.TROOP_NATIVE;
const maxTokens = Number(process.env.TROOP_MAX_TOKENS || '64');
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'troop-test', maxRetries: 0,
  timeout: 60000 });
const anthropic = new Anthropic({ baseURL: url, apiKey: 'troop-test', maxRetries: 0,
  timeout: 60000 });

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
function job(headers, what) {
  const id = headers.get('x-troop-job');
  assert(id, `${what}: no X-Troop-Job header`);
  if (process.env.TROOP_JOBS_FILE) appendFileSync(process.env.TROOP_JOBS_FILE, `${id}\n`);
}
function text(got, what) {
  assert(typeof got === 'string', `${what}: no text: ${JSON.stringify(got)}`);
  if (expected !== undefined)
    assert(got === expected, `${what}: '${got}' is not the engine's answer '${expected}'`);
}

// ---- the Responses API ------------------------------------------------------
await check('responses.create without streaming', async () => {
  const { data, response } = await openai.responses
    .create({ model, input: prompt, instructions: 'Answer briefly.', max_output_tokens: maxTokens })
    .withResponse();
  job(response.headers, 'responses.create');
  assert(data.object === 'response', `object is ${data.object}`);
  assert(data.model === model, `model '${data.model}', not the advertised '${model}'`);
  assert(['completed', 'incomplete'].includes(data.status), `status ${data.status}`);
  text(data.output_text, 'output_text');
  assert(data.usage && data.usage.input_tokens > 0 && data.usage.output_tokens > 0,
    `usage: ${JSON.stringify(data.usage)}`);
});

await check('responses.create with streaming (event order, deltas, usage)', async () => {
  const { data: stream, response } = await openai.responses
    .create({ model, max_output_tokens: maxTokens, stream: true,
      input: [{ role: 'user', content: [{ type: 'input_text', text: prompt }] }] })
    .withResponse();
  job(response.headers, 'responses stream');
  const types = [];
  let deltas = '', done = null, last = -1;
  for await (const ev of stream) {
    types.push(ev.type);
    assert(ev.sequence_number > last, `sequence_number ${ev.sequence_number} after ${last}`);
    last = ev.sequence_number;
    if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') done = ev.response;
  }
  assert(types[0] === 'response.created', `first event ${types[0]}`);
  for (const t of ['response.output_item.added', 'response.content_part.added',
    'response.output_text.delta', 'response.output_text.done', 'response.output_item.done'])
    assert(types.includes(t), `no ${t} in ${types.join(',')}`);
  assert(done, `no response.completed: ${types.join(',')}`);
  text(deltas, 'deltas');
  assert(done.usage && done.usage.output_tokens > 0, `usage ${JSON.stringify(done.usage)}`);
});

await check('responses.stream helper: finalResponse', async () => {
  const stream = openai.responses.stream({ model, input: prompt, max_output_tokens: maxTokens });
  let deltas = '';
  stream.on('response.output_text.delta', (ev) => { deltas += ev.delta; });
  const final = await stream.finalResponse();
  text(final.output_text, 'finalResponse.output_text');
  assert(deltas === final.output_text, 'deltas and final text differ');
});

await check('responses: unknown model is a 404 APIError', async () => {
  try {
    await openai.responses.create({ model: 'no-such-model:1b', input: prompt });
    throw new Error('no error');
  } catch (e) {
    assert(e instanceof OpenAI.NotFoundError, `${e.constructor.name}: ${e.message}`);
    assert(e.code === 'model_not_found', `code ${e.code}`);
  }
});

if (!native) {
  await check('responses: function tools and a tool-call history are translated', async () => {
    const r = await openai.responses.create({ model, max_output_tokens: maxTokens,
      tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object',
        properties: { city: { type: 'string' } } }, strict: false }],
      input: [{ role: 'user', content: prompt },
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' }] });
    assert(r.status === 'completed' || r.status === 'incomplete', `status ${r.status}`);
    assert(typeof r.output_text === 'string', JSON.stringify(r.output));
  });
  await check('responses: built-in tools are refused (400) where they cannot be translated', async () => {
    try {
      await openai.responses.create({ model, input: prompt, tools: [{ type: 'web_search' }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert(/web_search/.test(e.message), e.message);
    }
  });
}

// ---- the Anthropic Messages API ----------------------------------------------
await check('messages.create without streaming', async () => {
  const { data, response } = await anthropic.messages
    .create({ model, max_tokens: maxTokens, system: 'Answer briefly.',
      messages: [{ role: 'user', content: prompt }] })
    .withResponse();
  job(response.headers, 'messages.create');
  assert(data.type === 'message' && data.role === 'assistant', JSON.stringify(data));
  assert(data.model === model, `model '${data.model}', not the advertised '${model}'`);
  assert(data.content[0].type === 'text', JSON.stringify(data.content));
  text(data.content[0].text, 'content[0].text');
  assert(['end_turn', 'max_tokens', 'stop_sequence'].includes(data.stop_reason),
    `stop_reason ${data.stop_reason}`);
  assert(data.usage.input_tokens > 0 && data.usage.output_tokens > 0,
    `usage ${JSON.stringify(data.usage)}`);
});

await check('messages.create with streaming (event order, text deltas, usage)', async () => {
  const { data: stream, response } = await anthropic.messages
    .create({ model, max_tokens: maxTokens, stream: true,
      messages: [{ role: 'user', content: [{ type: 'text', text: prompt }] }] })
    .withResponse();
  job(response.headers, 'messages stream');
  const types = [];
  let deltas = '', usage = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') deltas += ev.delta.text;
    if (ev.type === 'message_delta') usage = ev.usage;
    if (ev.type === 'message_start')
      assert(ev.message.model === model, `model '${ev.message.model}' in message_start`);
  }
  assert(types[0] === 'message_start', `first event ${types[0]}`);
  assert(types[types.length - 1] === 'message_stop', `last event ${types[types.length - 1]}`);
  for (const t of ['content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta'])
    assert(types.includes(t), `no ${t} in ${types.join(',')}`);
  text(deltas, 'text deltas');
  assert(usage && usage.output_tokens > 0, `usage ${JSON.stringify(usage)}`);
});

await check('messages.stream helper: text events and finalMessage', async () => {
  const stream = anthropic.messages.stream({ model, max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: prompt }] });
  let deltas = '';
  stream.on('text', (t) => { deltas += t; });
  const final = await stream.finalMessage();
  assert(final.content[0].type === 'text', JSON.stringify(final.content));
  assert(deltas === final.content[0].text, 'text events and final text differ');
  assert(final.usage.output_tokens > 0, `usage ${JSON.stringify(final.usage)}`);
});

if (!native) await check('messages: client tools and a tool_use / tool_result history are translated', async () => {
  const m = await anthropic.messages.create({ model, max_tokens: maxTokens,
    tools: [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object',
      properties: { city: { type: 'string' } } } }],
    tool_choice: { type: 'auto' },
    messages: [{ role: 'user', content: prompt },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather',
        input: { city: 'Oslo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny' }] }] });
  assert(m.type === 'message' && m.content[0].type === 'text', JSON.stringify(m));
});

await check('messages: unknown model is a NotFoundError in the Anthropic shape', async () => {
  try {
    await anthropic.messages.create({ model: 'no-such-model:1b', max_tokens: 8,
      messages: [{ role: 'user', content: prompt }] });
    throw new Error('no error');
  } catch (e) {
    assert(e instanceof Anthropic.NotFoundError, `${e.constructor.name}: ${e.message}`);
    assert(e.error && e.error.type === 'error' && e.error.error.type === 'not_found_error',
      `body ${JSON.stringify(e.error)}`);
  }
});

// llama.cpp answers even a malformed message list
if (!native) await check('messages: a bad request is a BadRequestError in the Anthropic shape', async () => {
  try {
    await anthropic.messages.create({ model, max_tokens: 8, messages: 'not a list' });
    throw new Error('no error');
  } catch (e) {
    assert(e instanceof Anthropic.BadRequestError, `${e.constructor.name}: ${e.message}`);
    assert(e.error && e.error.error && e.error.error.type === 'invalid_request_error',
      `body ${JSON.stringify(e.error)}`);
  }
});

if (process.env.TROOP_KEYED_UP_URL) {
  // troop up started with --api-key: the Anthropic SDK sends it as x-api-key
  await check('messages: troop up --api-key takes the key as x-api-key', async () => {
    const keyed = new Anthropic({ baseURL: process.env.TROOP_KEYED_UP_URL,
      apiKey: process.env.TROOP_UP_KEY, maxRetries: 0 });
    const m = await keyed.messages.create({ model, max_tokens: 8,
      messages: [{ role: 'user', content: prompt }] });
    assert(m.type === 'message', JSON.stringify(m));
    const wrong = new Anthropic({ baseURL: process.env.TROOP_KEYED_UP_URL,
      apiKey: 'not-the-key-0123456789', maxRetries: 0 });
    try {
      await wrong.messages.create({ model, max_tokens: 8, messages: [{ role: 'user', content: prompt }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof Anthropic.AuthenticationError, `${e.constructor.name}: ${e.message}`);
      assert(e.error.error.type === 'authentication_error', `body ${JSON.stringify(e.error)}`);
    }
  });
}

if (process.env.TROOP_POOR_UP_URL) {
  await check('messages: no credits is a 402 billing_error', async () => {
    const poor = new Anthropic({ baseURL: process.env.TROOP_POOR_UP_URL, apiKey: 'x',
      maxRetries: 0 });
    try {
      await poor.messages.create({ model, max_tokens: 8, messages: [{ role: 'user', content: prompt }] });
      throw new Error('no error');
    } catch (e) {
      assert(e instanceof Anthropic.APIError && e.status === 402, `${e.constructor.name} ${e.status}`);
      assert(e.error.error.type === 'billing_error', `body ${JSON.stringify(e.error)}`);
    }
  });
}

if (failures) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
