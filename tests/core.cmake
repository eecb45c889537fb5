mf_c_test(test_config)
