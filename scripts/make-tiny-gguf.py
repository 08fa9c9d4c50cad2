#!/usr/bin/env python3
# make-tiny-gguf.py - write a tiny llama-architecture GGUF model with random
# weights and a real tokenizer, for tests against a real llama-server.
#
#   PYTHONPATH=<llama.cpp>/gguf-py python3 scripts/make-tiny-gguf.py \
#       <llama.cpp source tree> OUT.gguf
#
# The tokenizer (vocabulary, scores, token types, special ids) is copied from
# the vocabulary-only GGUF llama.cpp ships (models/ggml-vocab-llama-spm.gguf);
# the weights are random (seeded: the same file every time), so the model
# talks nonsense, fast: 2 layers, 64 wide, about 5 MB.  What the tests check
# is the real server's real API, not the text.  Needs numpy (Debian
# python3-numpy) and llama.cpp's gguf-py (in the same tree).
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("make-tiny-gguf: gguf-py not importable (PYTHONPATH=<llama.cpp>/gguf-py)")

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 32768
# the engine has no template of its own to read: ChatML, like most GGUFs
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make-tiny-gguf.py LLAMA_CPP_SRC OUT.gguf")
    src, out = sys.argv[1], sys.argv[2]
    vocab = gguf.GGUFReader(os.path.join(src, "models", "ggml-vocab-llama-spm.gguf"))
    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name("tiny-llama")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    n_vocab = 0
    for name, field in vocab.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            vals = field.contents()
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(vals)
            w.add_key_value(name, vals, vtype, sub_type=field.types[1])
        else:
            w.add_key_value(name, field.contents(), vtype)
    if n_vocab == 0:
        sys.exit("make-tiny-gguf: no tokenizer.ggml.tokens in the vocabulary file")
    w.add_vocab_size(n_vocab)
    w.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(17)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float16)

    def norm():
        return np.ones(N_EMBD, dtype=np.float32)

    n_kv = N_EMBD // N_HEAD * N_HEAD_KV
    # numpy shapes are (out, in): ggml's ne reversed
    w.add_tensor("token_embd.weight", mat(n_vocab, N_EMBD))
    w.add_tensor("output_norm.weight", norm())
    for i in range(N_LAYER):
        b = "blk.%d." % i
        w.add_tensor(b + "attn_norm.weight", norm())
        w.add_tensor(b + "attn_q.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(b + "attn_k.weight", mat(n_kv, N_EMBD))
        w.add_tensor(b + "attn_v.weight", mat(n_kv, N_EMBD))
        w.add_tensor(b + "attn_output.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(b + "ffn_norm.weight", norm())
        w.add_tensor(b + "ffn_gate.weight", mat(N_FF, N_EMBD))
        w.add_tensor(b + "ffn_up.weight", mat(N_FF, N_EMBD))
        w.add_tensor(b + "ffn_down.weight", mat(N_EMBD, N_FF))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
