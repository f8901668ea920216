from opsnb import csource


def test_the_base_score_literal_is_read_from_tl2cgens_predict():
    main_c = "  // Apply base_scores\n  result[0] += -0.0140002868503735;\n  // Apply postprocessor"
    assert csource.base_score_literal(main_c) == "-0.0140002868503735"
    assert csource.base_score_literal("void predict(...) {}") == "0"


def test_the_batch_entry_point_runs_each_unit_over_a_block():
    c = csource.batch_entry_point(
        n_features=3, n_units=2, base_score="0.5", quantize=True, block_rows=32
    )
    assert "#define NF 3" in c
    assert "#define BLOCK 32" in c
    assert c.index("predict_unit0(rows") < c.index("predict_unit1(rows") < c.index("acc[r] += 0.5")
    assert "quantize(v, (unsigned)j)" in c
    plain = csource.batch_entry_point(
        n_features=3, n_units=1, base_score="0", quantize=False, block_rows=32
    )
    assert "quantize" not in plain
    assert "predict_unit1" not in plain


def test_build_files_list_every_source():
    sources = ["main.c", "tu0.c", "opsnb_batch.c"]
    assert "OBJS = main.o tu0.o opsnb_batch.o" in csource.makefile(sources, cflags=["-O3"])
    assert "add_library(model SHARED main.c tu0.c opsnb_batch.c)" in csource.cmakelists(
        sources, cflags=["-O3"]
    )
