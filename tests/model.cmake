mf_c_test(test_gpt_ref)
set_tests_properties(test_gpt_ref PROPERTIES TIMEOUT 300)
mf_c_test(test_generate)
mf_c_test(test_recompute)
