// openai_sdk_engine.mjs BASE_URL MODEL PROMPT_FILE - the official OpenAI
// Node SDK through `troop up` against a real llama-server (run by
// test_engine_llamacpp.sh): a stream whose long prompt makes the worker
// send keep-alive comments before the first token, and an error the engine
// answered (501: no embeddings), raised by the SDK with the engine's
// status and message.
import fs from 'node:fs';
import OpenAI from 'openai';

const [base, model, promptFile] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'unused', maxRetries: 0,
	timeout: 120000 });
const fail = (msg) => { console.error('FAIL: ' + msg); process.exit(1); };

const stream = await client.chat.completions.create({
	model, max_tokens: 4, stream: true, stream_options: { include_usage: true },
	messages: [{ role: 'user', content: fs.readFileSync(promptFile, 'utf8') }],
});
let chunks = 0, usage = null;
for await (const ch of stream) {
	chunks++;
	if (ch.usage) usage = ch.usage;
}
if (!usage || usage.completion_tokens < 1) fail('no usage in the stream');
console.log(`ok: sdk stream with a long prompt: ${chunks} chunks, ` +
	`prompt_tokens ${usage.prompt_tokens}`);

try {
	await client.embeddings.create({ model, input: 'hello' });
	fail('embeddings on a server without --embeddings succeeded');
} catch (e) {
	if (!(e instanceof OpenAI.APIError) || e.status !== 501 || !/embeddings/.test(e.message))
		fail(`expected APIError 501 about embeddings, got ${e.status}: ${e.message}`);
	console.log(`ok: sdk raises the engine's error: ${e.status} ${e.message.slice(0, 80)}`);
}
