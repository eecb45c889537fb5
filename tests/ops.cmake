mf_c_test(test_ops)
