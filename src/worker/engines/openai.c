/*
 * openai.c - the driver for any OpenAI-compatible server given with
 * `--engine openai=URL`: only GET /v1/models is read; such a server has
 * no version endpoint and names no content hash.
 */
#include "engines/engine.h"

int openai_parse_models(engine_model_list *out, const json_t *body)
{
	return engine_parse_openai_list(out, body, ENGINE_OPENAI);
}
