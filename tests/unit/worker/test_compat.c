/*
 * test_compat.c - the Responses and Messages APIs over chat completions
 * (compat.h): requests translated or refused, replies (JSON and streams,
 * fed at every byte split) translated into each API's events, native
 * replies revised; errors in each API's shape (api_kind.h); the endpoint
 * probe's rules (endpoints.h); the token counter on each API's usage
 * (job.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_kind.h"
#include "compat.h"
#include "endpoints.h"
#include "error.h"
#include "job.h"

static json_t *parse(const char *s)
{
	json_t *v = json_loads(s, 0, NULL);

	assert_non_null(v);
	return v;
}

static json_t *request(api_kind k, const char *body, int want)
{
	json_t *in = parse(body), *out = NULL;
	int rc = compat_request(k, in, &out);

	json_decref(in);
	assert_int_equal(rc, want);
	if (want)
		assert_null(out);
	return out;
}

static const char *str_at(json_t *v, const char *path)
{
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(v))
			v = json_array_get(v, (size_t)atoi(tok));
		else
			v = json_object_get(v, tok);
	}
	return json_string_value(v);
}

/* ---- requests ----------------------------------------------------------------- */

static void test_responses_request(void **state)
{
	json_t *c = request(API_RESPONSES, "{\"model\":\"m\",\"instructions\":\"be brief\","
	    "\"input\":\"hi\",\"max_output_tokens\":12,\"temperature\":0.5,\"stream\":true,"
	    "\"store\":false}", 0);

	assert_string_equal(str_at(c, "model"), "m");
	assert_string_equal(str_at(c, "messages.0.role"), "system");
	assert_string_equal(str_at(c, "messages.0.content"), "be brief");
	assert_string_equal(str_at(c, "messages.1.role"), "user");
	assert_string_equal(str_at(c, "messages.1.content"), "hi");
	assert_int_equal(json_integer_value(json_object_get(c, "max_tokens")), 12);
	assert_true(json_is_real(json_object_get(c, "temperature")));
	assert_true(json_is_true(json_object_get(c, "stream")));
	assert_true(json_is_true(json_object_get(json_object_get(c, "stream_options"),
	    "include_usage")));
	assert_null(json_object_get(c, "store"));
	json_decref(c);

	/* multi-turn items, parts, developer as system, images by URL */
	c = request(API_RESPONSES, "{\"model\":\"m\",\"input\":["
	    "{\"role\":\"developer\",\"content\":\"rules\"},"
	    "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
	    "\"text\":\"look\"},{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,AA\"}]},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"ok\"}]}]}", 0);
	assert_string_equal(str_at(c, "messages.0.role"), "system");
	assert_string_equal(str_at(c, "messages.1.content.0.type"), "text");
	assert_string_equal(str_at(c, "messages.1.content.0.text"), "look");
	assert_string_equal(str_at(c, "messages.1.content.1.image_url.url"),
	    "data:image/png;base64,AA");
	assert_string_equal(str_at(c, "messages.2.content.0.text"), "ok");
	assert_null(json_object_get(c, "stream"));
	json_decref(c);
}

static void test_responses_request_refused(void **state)
{
	static const char *const bad[] = {
		"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}",
		"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\"}]}",
		"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
		"\"tool_choice\":{\"type\":\"file_search\"}}",
		"{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\"}]}",
		"{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}",
		"{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}",
		"{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}",
		"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\"}]}]}",
		"{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"input\":42}",
		"{\"model\":\"m\"}",
		"{\"model\":\"m\",\"input\":\"x\",\"max_output_tokens\":\"9\"}",
		"{\"model\":\"m\",\"input\":\"x\",\"stream\":\"yes\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		request(API_RESPONSES, bad[i], TROOP_EINVAL);
		assert_true(strlen(troop_error_msg()) > 10);
	}
	request(API_RESPONSES, bad[0], TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "web_search"));
}

static void test_messages_request(void **state)
{
	json_t *c = request(API_MESSAGES, "{\"model\":\"m\",\"max_tokens\":20,"
	    "\"system\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}],"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"yo\"}]},{\"role\":\"user\",\"content\":["
	    "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
	    "\"data\":\"QUJD\"}},{\"type\":\"text\",\"text\":\"what?\"}]}],"
	    "\"stop_sequences\":[\"END\"],\"top_k\":5,\"stream\":false,\"metadata\":{}}", 0);

	assert_string_equal(str_at(c, "messages.0.role"), "system");
	assert_string_equal(str_at(c, "messages.0.content"), "a\n\nb");
	assert_string_equal(str_at(c, "messages.1.content"), "hi");
	assert_string_equal(str_at(c, "messages.2.content.0.text"), "yo");
	assert_string_equal(str_at(c, "messages.3.content.0.image_url.url"),
	    "data:image/png;base64,QUJD");
	assert_string_equal(str_at(c, "messages.3.content.1.text"), "what?");
	assert_string_equal(str_at(c, "stop.0"), "END");
	assert_int_equal(json_integer_value(json_object_get(c, "max_tokens")), 20);
	assert_int_equal(json_integer_value(json_object_get(c, "top_k")), 5);
	assert_null(json_object_get(c, "stream"));
	assert_null(json_object_get(c, "metadata"));
	json_decref(c);
}

static void test_messages_request_refused(void **state)
{
	static const char *const bad[] = {
		"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"name\":\"f\"}]}",
		"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"web_search_20250305\","
		"\"name\":\"web_search\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\","
		"\"id\":\"t\",\"name\":\"f\",\"input\":{}}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
		"\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":\"x\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
		"\"document\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":\"hi\"}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}",
		"{\"model\":\"m\",\"messages\":[],\"system\":[{\"type\":\"image\"}]}",
		"{\"model\":\"m\",\"messages\":[],\"stop_sequences\":[1]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
		"\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
		"\"source\":{\"type\":\"base64\",\"media_type\":\"a;b\",\"data\":\"x\"}}]}]}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		request(API_MESSAGES, bad[i], TROOP_EINVAL);
}

static void test_tools_request(void **state)
{
	json_t *c = request(API_RESPONSES, "{\"model\":\"m\",\"tools\":[{\"type\":\"function\","
	    "\"name\":\"get_weather\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"},"
	    "\"strict\":true}],\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},"
	    "\"input\":[{\"role\":\"user\",\"content\":\"weather?\"},"
	    "{\"type\":\"reasoning\",\"id\":\"rs\",\"summary\":[]},"
	    "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"get_weather\","
	    "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"},"
	    "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"get_weather\","
	    "\"arguments\":\"{}\"},"
	    "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"sunny\"}]}", 0);

	assert_string_equal(str_at(c, "tools.0.type"), "function");
	assert_string_equal(str_at(c, "tools.0.function.name"), "get_weather");
	assert_string_equal(str_at(c, "tools.0.function.parameters.type"), "object");
	assert_string_equal(str_at(c, "tool_choice.function.name"), "get_weather");
	assert_int_equal(json_array_size(json_object_get(c, "messages")), 3);
	assert_string_equal(str_at(c, "messages.1.role"), "assistant");
	assert_string_equal(str_at(c, "messages.1.tool_calls.0.id"), "c1");
	assert_string_equal(str_at(c, "messages.1.tool_calls.0.function.arguments"),
	    "{\"city\":\"Oslo\"}");
	assert_string_equal(str_at(c, "messages.1.tool_calls.1.id"), "c2");
	assert_string_equal(str_at(c, "messages.2.role"), "tool");
	assert_string_equal(str_at(c, "messages.2.tool_call_id"), "c1");
	assert_string_equal(str_at(c, "messages.2.content"), "sunny");
	json_decref(c);

	c = request(API_MESSAGES, "{\"model\":\"m\",\"max_tokens\":9,\"tools\":[{\"name\":\"f\","
	    "\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":"
	    "{\"type\":\"any\",\"disable_parallel_tool_use\":true},\"messages\":["
	    "{\"role\":\"user\",\"content\":\"go\"},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"calling\"},"
	    "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{\"a\":1}}]},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"42\"}]},{\"type\":\"text\",\"text\":"
	    "\"and now?\"}]}]}", 0);
	assert_string_equal(str_at(c, "tools.0.function.name"), "f");
	assert_string_equal(str_at(c, "tools.0.function.parameters.type"), "object");
	assert_string_equal(str_at(c, "tool_choice"), "required");
	assert_true(json_is_false(json_object_get(c, "parallel_tool_calls")));
	assert_string_equal(str_at(c, "messages.1.role"), "assistant");
	assert_string_equal(str_at(c, "messages.1.content.0.text"), "calling");
	assert_string_equal(str_at(c, "messages.1.tool_calls.0.id"), "toolu_1");
	assert_string_equal(str_at(c, "messages.1.tool_calls.0.function.arguments"), "{\"a\":1}");
	assert_string_equal(str_at(c, "messages.2.role"), "tool");
	assert_string_equal(str_at(c, "messages.2.tool_call_id"), "toolu_1");
	assert_string_equal(str_at(c, "messages.2.content.0.text"), "42");
	assert_string_equal(str_at(c, "messages.3.role"), "user");
	assert_string_equal(str_at(c, "messages.3.content.0.text"), "and now?");
	json_decref(c);
}

/* ---- replies ------------------------------------------------------------------ */

/* The translation of `in` fed whole, then at every split: all the same. */
static char *translate(api_kind k, bool sse, bool native, const char *in)
{
	size_t len = strlen(in);
	char *first = NULL;

	for (size_t split = 0; split <= len; split++) {
		compat_reply *c;
		dynbuf out;
		char *got;

		dynbuf_init(&out, 1u << 24);
		if (native)
			assert_int_equal(compat_native_new(&c, k, sse, "tiny"), 0);
		else
			assert_int_equal(compat_reply_new(&c, k, sse, "J1", "tiny", 1700000000), 0);
		assert_int_equal(compat_reply_feed(c, in, split, &out), 0);
		assert_int_equal(compat_reply_feed(c, in + split, len - split, &out), 0);
		assert_int_equal(compat_reply_finish(c, &out), 0);
		compat_reply_free(c);
		got = dynbuf_take(&out, NULL);
		assert_non_null(got);
		if (!first) {
			first = got;
		} else {
			assert_string_equal(got, first);
			free(got);
		}
		if (!sse)
			break;  /* a JSON body is collected whole anyway */
	}
	return first;
}

/* The events of a translated stream: "name" lines and data objects. */
static size_t events(const char *s, char names[][48], json_t **data, size_t max)
{
	size_t n = 0;

	while (*s && n < max) {
		const char *nl;

		assert_true(strncmp(s, "event: ", 7) == 0);
		nl = strchr(s, '\n');
		snprintf(names[n], 48, "%.*s", (int)(nl - s - 7), s + 7);
		s = nl + 1;
		assert_true(strncmp(s, "data: ", 6) == 0);
		nl = strstr(s, "\n\n");
		data[n] = json_loadb(s + 6, (size_t)(nl - s - 6), 0, NULL);
		assert_non_null(data[n]);
		assert_string_equal(json_string_value(json_object_get(data[n], "type")), names[n]);
		s = nl + 2;
		n++;
	}
	return n;
}

static const char chat_stream[] =
	"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	"\"content\":\"\"}}]}\n\n"
	"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
	": keep-alive\n\n"
	"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}\r\n\r\n"
	"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
	"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n"
	"data: [DONE]\n\n";

static void test_responses_stream(void **state)
{
	char *out = translate(API_RESPONSES, true, false, chat_stream);
	char names[32][48];
	json_t *d[32];
	size_t n = events(out, names, d, 32);
	static const char *const want[] = { "response.created", "response.in_progress",
		"response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done",
		"response.output_item.done", "response.incomplete" };

	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(names[i], want[i]);
		assert_int_equal(json_integer_value(json_object_get(d[i], "sequence_number")), i);
	}
	assert_string_equal(str_at(d[0], "response.id"), "resp_J1");
	assert_string_equal(str_at(d[0], "response.status"), "in_progress");
	assert_string_equal(str_at(d[0], "response.model"), "tiny");
	assert_string_equal(str_at(d[2], "item.id"), "msg_J1");
	assert_string_equal(str_at(d[4], "delta"), "Hel");
	assert_string_equal(str_at(d[5], "delta"), "lo \xc3\xa9");
	assert_string_equal(str_at(d[6], "text"), "Hello \xc3\xa9");
	assert_string_equal(str_at(d[8], "item.content.0.text"), "Hello \xc3\xa9");
	assert_string_equal(str_at(d[9], "response.status"), "incomplete");
	assert_string_equal(str_at(d[9], "response.incomplete_details.reason"), "max_output_tokens");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(d[9],
	    "response"), "usage"), "input_tokens")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(d[9],
	    "response"), "usage"), "output_tokens")), 2);
	for (size_t i = 0; i < n; i++)
		json_decref(d[i]);
	free(out);
}

static void test_messages_stream(void **state)
{
	char *out = translate(API_MESSAGES, true, false, chat_stream);
	char names[32][48];
	json_t *d[32];
	size_t n = events(out, names, d, 32);
	static const char *const want[] = { "message_start", "content_block_start",
		"content_block_delta", "content_block_delta", "content_block_stop", "message_delta",
		"message_stop" };

	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], want[i]);
	assert_string_equal(str_at(d[0], "message.id"), "msg_J1");
	assert_string_equal(str_at(d[0], "message.model"), "tiny");
	assert_string_equal(str_at(d[1], "content_block.type"), "text");
	assert_string_equal(str_at(d[2], "delta.type"), "text_delta");
	assert_string_equal(str_at(d[3], "delta.text"), "lo \xc3\xa9");
	assert_string_equal(str_at(d[5], "delta.stop_reason"), "max_tokens");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(d[5], "usage"),
	    "output_tokens")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(d[5], "usage"),
	    "input_tokens")), 7);
	for (size_t i = 0; i < n; i++)
		json_decref(d[i]);
	free(out);
}

static void test_stream_error_event(void **state)
{
	static const char in[] =
		"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
		"data: {\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}\n\n"
		"data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";
	char *out = translate(API_MESSAGES, true, false, in);
	const char *e = strstr(out, "event: error\ndata: ");

	assert_non_null(e);
	assert_non_null(strstr(e, "\"type\":\"error\""));
	assert_non_null(strstr(e, "out of memory"));
	assert_null(strstr(out, "message_stop"));      /* not complete */
	assert_null(strstr(e, "\"text\":\"b\""));      /* nothing after the error */
	free(out);

	out = translate(API_RESPONSES, true, false, in);
	e = strstr(out, "event: error\ndata: ");
	assert_non_null(e);
	assert_non_null(strstr(e, "\"sequence_number\":5"));
	assert_null(strstr(out, "response.completed"));
	free(out);
}

static void test_stream_without_done(void **state)
{
	/* an engine that ends the stream without [DONE] nor a last blank line */
	static const char in[] = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},"
		"\"finish_reason\":\"stop\"}]}";
	char *out = translate(API_MESSAGES, true, false, in);

	assert_non_null(strstr(out, "\"text\":\"x\""));
	assert_non_null(strstr(out, "\"stop_reason\":\"end_turn\""));
	assert_non_null(strstr(out, "event: message_stop"));
	free(out);
}

static void test_json_replies(void **state)
{
	static const char in[] = "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"/x/t.gguf\","
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi!\"},"
		"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}";
	char *out = translate(API_RESPONSES, false, false, in);
	json_t *r = parse(out);

	assert_string_equal(str_at(r, "object"), "response");
	assert_string_equal(str_at(r, "id"), "resp_J1");
	assert_string_equal(str_at(r, "status"), "completed");
	assert_string_equal(str_at(r, "model"), "tiny");
	assert_string_equal(str_at(r, "output.0.type"), "message");
	assert_string_equal(str_at(r, "output.0.content.0.type"), "output_text");
	assert_string_equal(str_at(r, "output.0.content.0.text"), "Hi!");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "usage"),
	    "total_tokens")), 5);
	json_decref(r);
	free(out);

	out = translate(API_MESSAGES, false, false, in);
	r = parse(out);
	assert_string_equal(str_at(r, "type"), "message");
	assert_string_equal(str_at(r, "id"), "msg_J1");
	assert_string_equal(str_at(r, "content.0.text"), "Hi!");
	assert_string_equal(str_at(r, "stop_reason"), "end_turn");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "usage"),
	    "input_tokens")), 3);
	json_decref(r);
	free(out);

	/* not a chat completion: an error body in the API's shape */
	out = translate(API_MESSAGES, false, false, "<html>oops</html>");
	r = parse(out);
	assert_string_equal(str_at(r, "type"), "error");
	assert_string_equal(str_at(r, "error.type"), "api_error");
	json_decref(r);
	free(out);
}

/* A chat reply with two tool calls after some text, streamed (arguments
 * in pieces) and whole. */
static const char tool_stream[] =
	"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Let me\"}}]}\n\n"
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
	"\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	"{\"arguments\":\"{\\\"x\\\":\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	"{\"arguments\":\"1}\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
	"\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}],"
	"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\n\n"
	"data: [DONE]\n\n";

static void test_tool_replies(void **state)
{
	static const char json_in[] = "{\"choices\":[{\"message\":{\"role\":\"assistant\","
		"\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\","
		"\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
		"\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}";
	char names[32][48];
	json_t *d[32], *r;
	char *out;
	size_t n;
	static const char *const want_m[] = { "message_start", "content_block_start",
		"content_block_delta", "content_block_stop", "content_block_start",
		"content_block_delta", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_stop", "message_delta",
		"message_stop" };
	static const char *const want_r[] = { "response.created", "response.in_progress",
		"response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done",
		"response.output_item.added", "response.function_call_arguments.delta",
		"response.function_call_arguments.delta", "response.function_call_arguments.done",
		"response.output_item.done", "response.output_item.added",
		"response.function_call_arguments.delta", "response.function_call_arguments.done",
		"response.output_item.done", "response.completed" };

	out = translate(API_MESSAGES, true, false, tool_stream);
	n = events(out, names, d, 32);
	assert_int_equal(n, sizeof(want_m) / sizeof(want_m[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], want_m[i]);
	assert_string_equal(str_at(d[4], "content_block.type"), "tool_use");
	assert_string_equal(str_at(d[4], "content_block.id"), "call_a");
	assert_string_equal(str_at(d[4], "content_block.name"), "f");
	assert_int_equal(json_integer_value(json_object_get(d[4], "index")), 1);
	assert_string_equal(str_at(d[5], "delta.type"), "input_json_delta");
	assert_string_equal(str_at(d[5], "delta.partial_json"), "{\"x\":");
	assert_string_equal(str_at(d[6], "delta.partial_json"), "1}");
	assert_string_equal(str_at(d[8], "content_block.name"), "g");
	assert_int_equal(json_integer_value(json_object_get(d[8], "index")), 2);
	assert_string_equal(str_at(d[11], "delta.stop_reason"), "tool_use");
	for (size_t i = 0; i < n; i++)
		json_decref(d[i]);
	free(out);

	out = translate(API_RESPONSES, true, false, tool_stream);
	n = events(out, names, d, 32);
	assert_int_equal(n, sizeof(want_r) / sizeof(want_r[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], want_r[i]);
	assert_string_equal(str_at(d[8], "item.type"), "function_call");
	assert_string_equal(str_at(d[8], "item.call_id"), "call_a");
	assert_int_equal(json_integer_value(json_object_get(d[8], "output_index")), 1);
	assert_string_equal(str_at(d[11], "arguments"), "{\"x\":1}");
	assert_string_equal(str_at(d[17], "response.output.0.type"), "message");
	assert_string_equal(str_at(d[17], "response.output.1.arguments"), "{\"x\":1}");
	assert_string_equal(str_at(d[17], "response.output.2.name"), "g");
	for (size_t i = 0; i < n; i++)
		json_decref(d[i]);
	free(out);

	out = translate(API_MESSAGES, false, false, json_in);
	r = parse(out);
	assert_int_equal(json_array_size(json_object_get(r, "content")), 1);
	assert_string_equal(str_at(r, "content.0.type"), "tool_use");
	assert_string_equal(str_at(r, "content.0.id"), "call_a");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(r, "content"), 0), "input"), "x")), 1);
	assert_string_equal(str_at(r, "stop_reason"), "tool_use");
	json_decref(r);
	free(out);

	out = translate(API_RESPONSES, false, false, json_in);
	r = parse(out);
	assert_int_equal(json_array_size(json_object_get(r, "output")), 1);
	assert_string_equal(str_at(r, "output.0.type"), "function_call");
	assert_string_equal(str_at(r, "output.0.call_id"), "call_a");
	assert_string_equal(str_at(r, "output.0.arguments"), "{\"x\":1}");
	json_decref(r);
	free(out);
}

static void test_native_responses_stream(void **state)
{
	/* what llama.cpp sends: no sequence_number, output_index,
	 * content_index, nor output in the Response; its file path as model */
	static const char in[] =
		"event: response.created\ndata: {\"type\":\"response.created\",\"response\":"
		"{\"id\":\"r\",\"object\":\"response\",\"status\":\"in_progress\"}}\n\n"
		"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\","
		"\"item\":{\"id\":\"m\",\"type\":\"message\",\"content\":[]}}\n\n"
		"event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\","
		"\"item_id\":\"m\",\"part\":{\"type\":\"output_text\",\"text\":\"\"}}\n\n"
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
		"\"item_id\":\"m\",\"delta\":\"x\"}\n\n"
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":"
		"{\"id\":\"r\",\"model\":\"/home/me/models/t.gguf\",\"output\":[],\"usage\":"
		"{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
	char *out = translate(API_RESPONSES, true, true, in);
	char names[16][48];
	json_t *d[16];
	size_t n = events(out, names, d, 16);

	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_integer_value(json_object_get(d[i], "sequence_number")), i);
	assert_true(json_is_array(json_object_get(json_object_get(d[0], "response"), "output")));
	assert_int_equal(json_integer_value(json_object_get(d[1], "output_index")), 0);
	assert_int_equal(json_integer_value(json_object_get(d[2], "content_index")), 0);
	assert_int_equal(json_integer_value(json_object_get(d[3], "output_index")), 0);
	assert_int_equal(json_integer_value(json_object_get(d[3], "content_index")), 0);
	assert_string_equal(str_at(d[4], "response.model"), "tiny");
	assert_null(strstr(out, "gguf"));
	for (size_t i = 0; i < n; i++)
		json_decref(d[i]);
	free(out);

	/* a whole native body: the model renamed, the rest as it was */
	out = translate(API_MESSAGES, false, true, "{\"type\":\"message\",\"model\":\"/a/b.gguf\","
	    "\"content\":[]}");
	assert_string_equal(out, "{\"type\":\"message\",\"model\":\"tiny\",\"content\":[]}");
	free(out);
	out = translate(API_MESSAGES, false, true, "not json");
	assert_string_equal(out, "not json");
	free(out);
}

/* ---- errors in each API's shape --------------------------------------------------- */

static void test_error_shapes(void **state)
{
	static const char oai[] = "{\"error\":{\"message\":\"no such model\",\"type\":"
		"\"invalid_request_error\",\"code\":\"model_not_found\"}}";
	json_t *e = NULL;
	char *ev;

	assert_int_equal(api_kind_of_path("/v1/messages"), API_MESSAGES);
	assert_int_equal(api_kind_of_path("/v1/messages/count_tokens"), API_MESSAGES);
	assert_int_equal(api_kind_of_path("/v1/responses"), API_RESPONSES);
	assert_int_equal(api_kind_of_path("/v1/chat/completions"), API_OPENAI);
	assert_int_equal(api_kind_of_path("/tokenize"), API_OPENAI);

	assert_int_equal(api_error_convert(API_MESSAGES, 404, oai, strlen(oai), &e), 0);
	assert_string_equal(str_at(e, "type"), "error");
	assert_string_equal(str_at(e, "error.type"), "not_found_error");
	assert_string_equal(str_at(e, "error.message"), "no such model");
	json_decref(e);
	/* already Anthropic-shaped: kept */
	e = api_error_body(API_MESSAGES, 429, NULL, NULL, "slow down");
	ev = json_dumps(e, 0);
	json_decref(e);
	assert_int_equal(api_error_convert(API_MESSAGES, 429, ev, strlen(ev), &e), 0);
	assert_string_equal(str_at(e, "error.type"), "rate_limit_error");
	assert_string_equal(str_at(e, "error.message"), "slow down");
	json_decref(e);
	free(ev);
	assert_int_equal(api_error_convert(API_RESPONSES, 502, "Bad Gateway", 11, &e), 0);
	assert_string_equal(str_at(e, "error.message"), "Bad Gateway");
	assert_string_equal(str_at(e, "error.type"), "server_error");
	json_decref(e);

	assert_string_equal(api_anthropic_type(400), "invalid_request_error");
	assert_string_equal(api_anthropic_type(401), "authentication_error");
	assert_string_equal(api_anthropic_type(402), "billing_error");
	assert_string_equal(api_anthropic_type(403), "permission_error");
	assert_string_equal(api_anthropic_type(503), "overloaded_error");
	assert_string_equal(api_anthropic_type(504), "timeout_error");
	assert_string_equal(api_anthropic_type(500), "api_error");

	ev = api_error_event(API_MESSAGES, TROOP_ETIMEOUT, "late", 0);
	assert_string_equal(ev, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
	    "\"timeout_error\",\"message\":\"late\"}}\n\n");
	free(ev);
	ev = api_error_event(API_RESPONSES, TROOP_EUPSTREAM, "gone", 9);
	assert_non_null(strstr(ev, "event: error\ndata: {"));
	assert_non_null(strstr(ev, "\"sequence_number\":9"));
	assert_non_null(strstr(ev, "\"error\":{\"message\":\"gone\""));
	free(ev);
	ev = api_error_event(API_OPENAI, TROOP_EUPSTREAM, "gone", 0);
	assert_true(strncmp(ev, "data: {\"error\":", 15) == 0);
	free(ev);
}

static void test_endpoints(void **state)
{
	json_t *a;

	assert_int_equal(endpoints_bit("/v1/responses"), ENDPOINT_RESPONSES);
	assert_int_equal(endpoints_bit("/v1/messages"), ENDPOINT_MESSAGES);
	assert_int_equal(endpoints_bit("/v1/messages/count_tokens"), ENDPOINT_COUNT_TOKENS);
	assert_int_equal(endpoints_bit("/tokenize"), ENDPOINT_TOKENIZE);
	assert_int_equal(endpoints_bit("/v1/chat/completions"), 0);
	assert_true(endpoints_status_served(400));
	assert_true(endpoints_status_served(422));
	assert_true(endpoints_status_served(200));
	assert_true(endpoints_status_served(500));   /* llama.cpp: 'messages' is required */
	assert_false(endpoints_status_served(404));
	assert_false(endpoints_status_served(405));
	assert_false(endpoints_status_served(501));
	assert_false(endpoints_status_served(502));
	assert_false(endpoints_status_served(0));
	a = endpoints_json(ENDPOINT_MESSAGES | ENDPOINT_TOKENIZE);
	assert_int_equal(json_array_size(a), 2);
	assert_string_equal(json_string_value(json_array_get(a, 0)), "messages");
	assert_string_equal(json_string_value(json_array_get(a, 1)), "tokenize");
	json_decref(a);
}

/* ---- the token counter on each API --------------------------------------------------- */

static void counted(const char *in, bool sse, int64_t pt, int64_t ct, bool rep)
{
	for (size_t split = 0; split <= strlen(in); split++) {
		usage_counter *u;
		int64_t p, c;
		bool r;

		assert_int_equal(usage_counter_new(&u, sse), 0);
		usage_counter_feed(u, in, split);
		usage_counter_feed(u, in + split, strlen(in) - split);
		usage_counter_result(u, &p, &c, &r);
		usage_counter_free(u);
		assert_int_equal(p, pt);
		assert_int_equal(c, ct);
		assert_int_equal(r, rep);
	}
}

static void test_usage_of_each_api(void **state)
{
	/* Anthropic: input in message_start (plus what was read from the
	 * cache), output in message_delta */
	counted("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[],"
	    "\"usage\":{\"input_tokens\":4,\"cache_read_input_tokens\":25,\"output_tokens\":0}}}\n\n"
	    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
	    "\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n"
	    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n", true, 29, 6, true);
	/* Responses: response.completed, whose output has text too */
	counted("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
	    "\"delta\":\"a\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\","
	    "\"response\":{\"output\":[{\"content\":[{\"text\":\"abc\"}]}],\"usage\":{\"input_tokens\":"
	    "11,\"output_tokens\":3,\"total_tokens\":14,\"input_tokens_details\":{\"cached_tokens\":"
	    "2}}}}\n\n", true, 11, 3, true);
	/* without usage: each delta event counts one */
	counted("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
	    "\"delta\":\"a\",\"usage\":null}\n\nevent: response.output_text.delta\ndata: {\"delta\":"
	    "\"b\"}\n\n", true, 0, 2, false);
	/* whole bodies */
	counted("{\"id\":\"msg\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}],"
	    "\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}", false, 5, 1, true);
	counted("{\"object\":\"response\",\"usage\":{\"input_tokens\":8,\"output_tokens\":2,"
	    "\"output_tokens_details\":{\"reasoning_tokens\":0}}}", false, 8, 2, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_responses_request),
		cmocka_unit_test(test_responses_request_refused),
		cmocka_unit_test(test_messages_request),
		cmocka_unit_test(test_messages_request_refused),
		cmocka_unit_test(test_tools_request),
		cmocka_unit_test(test_tool_replies),
		cmocka_unit_test(test_responses_stream),
		cmocka_unit_test(test_messages_stream),
		cmocka_unit_test(test_stream_error_event),
		cmocka_unit_test(test_stream_without_done),
		cmocka_unit_test(test_json_replies),
		cmocka_unit_test(test_native_responses_stream),
		cmocka_unit_test(test_error_shapes),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_usage_of_each_api),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
