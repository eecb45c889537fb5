# GPT-2 BPE tokenizer: ids against the npm package's JavaScript encoder (needs node; skips visibly without).
mf_c_test(test_tokenizer)
