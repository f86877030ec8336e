"""`scaling family` for a GPU recipe: --seq-len and --vocab (a size or a prepared corpus) give the shapes and
FLOPs a run of that recipe has, and a target is printed as it was given."""
import pytest

from scaling.cli import main
from scaling.family import shape_for_params, smallest_size


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[2:] if line and not line.startswith("(")]


def test_family_prints_a_fractional_target_as_given_not_rounded_to_one_digit(capsys):
    assert main(["family", "1.25e8", "3.5e8"]) == 0
    targets = [row[0] for row in _rows(capsys.readouterr().out)]
    assert targets == ["1.25e+08", "3.5e+08"]


def test_family_seq_len_and_vocab_give_the_shape_and_flops_a_gpu_run_has(capsys):
    assert main(["family", "1e8", "1e9", "--seq-len", "2048", "--vocab", "32768"]) == 0
    out = capsys.readouterr().out
    for target, row in zip((1e8, 1e9), _rows(out)):
        s = shape_for_params(target, vocab_size=32768, seq_len=2048)
        assert row[1:] == [s.describe(), str(s.d_ff), f"{s.params:,}", f"{s.params_nonembed:,}",
                           f"{s.flops_per_token():.4g}"]
        # the flags matter: the defaults (vocab 256, seq 256) would print another count and cost
        default = shape_for_params(target)
        assert (s.params, s.flops_per_token()) != (default.params, default.flops_per_token())
    assert "vocab 32,768, seq 2048" in out


def test_family_reads_the_vocabulary_of_a_prepared_bpe_corpus(tmp_path, capsys):
    pytest.importorskip("tokenizers")
    from scaling.prepare import prepare

    src = tmp_path / "src"
    src.mkdir()
    words = "the of and to in a is that for it as with was on be by this are from or at an which".split()
    for i in range(40):
        (src / f"d{i}.txt").write_text(" ".join(words[(i + j) % len(words)] for j in range(300)))
    meta = prepare(str(src), str(tmp_path / "bpe"), tokenizer="bpe:600", val_fraction=0.2)
    vocab = meta["tokenizer"]["vocab_size"]
    assert vocab != 256
    assert main(["family", "1e6", "--vocab", str(tmp_path / "bpe"), "--seq-len", "1024"]) == 0
    out = capsys.readouterr().out
    s = shape_for_params(1e6, vocab_size=vocab, seq_len=1024)
    assert _rows(out)[0][1:4] == [s.describe(), str(s.d_ff), f"{s.params:,}"]
    assert f"vocab {vocab:,} from {tmp_path / 'bpe'}" in out


def test_family_warns_below_the_smallest_model_of_a_large_vocabulary(capsys):
    assert main(["family", "1e5", "2e7", "--vocab", "32768", "--seq-len", "1024"]) == 0
    out, err = capsys.readouterr()
    least = smallest_size(vocab_size=32768, seq_len=1024)
    assert err.count("warning") == 1 and "1e+05 is below the smallest model" in err and f"{least:,}" in err
    assert f"{least:,}" in out


@pytest.mark.parametrize("argv, message", [
    (["--vocab", "0"], "--vocab 0: must be a positive integer"),
    (["--vocab", "/no/such/corpus"], "--vocab /no/such/corpus: neither a positive integer nor a corpus"),
    (["--seq-len", "0"], "--seq-len 0: must be at least 1"),
], ids=["vocab zero", "vocab not a corpus", "seq-len zero"])
def test_family_refuses_a_bad_vocab_or_seq_len_in_one_line(capsys, argv, message):
    assert main(["family", "1e6", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
