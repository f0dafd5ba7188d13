import json
import subprocess
import sys

from polyformer import create_model
from polyformer.cli import main
from polyformer.data import ByteTokenizer, CharTokenizer


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("polyformer: error:")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_list_and_info(capsys):
    rc, out, _ = run_cli(capsys, "list", "lm-*")
    assert rc == 0 and "lm-tiny" in out and "transformer-base" not in out
    rc, out, _ = run_cli(capsys, "info", "transformer-base", "--seq-len", "256")
    assert rc == 0 and "63,082,496" in out and "KV cache" in out


def test_unknown_model_suggests(capsys):
    rc, _, err = run_cli(capsys, "info", "transfomer-base")
    assert_one_line_error(rc, err, "unknown model 'transfomer-base'", "transformer-base")


def test_unknown_config_key(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: transformer-tiny\ntask: reverse\nmax_stepz: 3\n")
    rc, _, err = run_cli(capsys, "train", str(cfg))
    assert_one_line_error(rc, err, "unknown config key 'max_stepz'", "max_steps")
    rc, _, err = run_cli(capsys, "train", str(cfg).replace("c.yaml", "missing.yaml"))
    assert_one_line_error(rc, err, "does not exist")


def test_bad_model_override_value(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: transformer-tiny\ntask: reverse\nmodel_overrides: {n_heads: 5}\n")
    rc, _, err = run_cli(capsys, "train", str(cfg))
    assert_one_line_error(rc, err, "n_heads")


def test_sequence_too_long(capsys, tmp_path):
    model = create_model("lm-tiny", vocab_size=ByteTokenizer().vocab_size)
    model.save_pretrained(tmp_path, tokenizer=ByteTokenizer())
    rc, _, err = run_cli(capsys, "generate", str(tmp_path), "--prompt", "x" * 80, "--max-new-tokens", "5")
    assert_one_line_error(rc, err, "max_seq_len=64")


def test_corrupt_and_missing_checkpoint(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "generate", str(tmp_path / "none"), "--prompt", "hi")
    assert_one_line_error(rc, err, "does not exist")
    model = create_model("lm-tiny", vocab_size=ByteTokenizer().vocab_size)
    model.save_pretrained(tmp_path, tokenizer=ByteTokenizer())
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    rc, _, err = run_cli(capsys, "generate", str(tmp_path), "--prompt", "hi")
    assert_one_line_error(rc, err, "corrupt weights")
    (tmp_path / "model.safetensors").unlink()
    rc, _, err = run_cli(capsys, "generate", str(tmp_path), "--prompt", "hi")
    assert_one_line_error(rc, err, "missing weights")


def test_debug_flag_shows_traceback(tmp_path):
    cmd = [sys.executable, "-m", "polyformer", "--debug", "info", "nope-model"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr
    p = subprocess.run(cmd[:2] + ["polyformer"] + cmd[4:], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_train_eval_generate_translate_end_to_end(capsys, tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: transformer-tiny\ntask: reverse\n"
        "data: {n_train: 200, n_val: 20, max_len: 5}\n"
        f"out_dir: {out}\nmax_steps: 6\nbatch_size: 8\neval_interval: 3\nwarmup_steps: 2\nprogress: false\n"
    )
    rc, stdout, err = run_cli(capsys, "train", str(cfg), "eval.max_examples=5")
    assert rc == 0, err
    result = json.loads(stdout[stdout.index("{") :])
    assert result["step"] == 6 and "exact_match" in result
    for f in ("config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "trainer_state.json"):
        assert (out / f).is_file(), f
    evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals if e["kind"] == "eval"] == [3, 6]
    rc, stdout, _ = run_cli(capsys, "eval", str(out))
    assert rc == 0 and "val_loss" in json.loads(stdout)
    rc, stdout, _ = run_cli(capsys, "translate", str(out), "123", "4567", "--beams", "2")
    assert rc == 0 and stdout.count("\n") == 2  # one line per input, even if empty
    rc, _, err = run_cli(capsys, "generate", str(out), "--prompt", "12a")
    assert_one_line_error(rc, err, "not in this tokenizer's alphabet")


def test_lm_generate_cli(capsys, tmp_path):
    tok = CharTokenizer.from_text("abcdefgh ")
    model = create_model("lm-tiny", vocab_size=tok.vocab_size)
    model.save_pretrained(tmp_path, tokenizer=tok)
    rc, out, _ = run_cli(
        capsys, "generate", str(tmp_path), "--prompt", "abc", "--max-new-tokens", "10", "--temperature", "0"
    )
    assert rc == 0 and out.startswith("abc")
