"""Weight files: missing, unreadable, mismatched or malicious ones end in one line; no code runs."""

import builtins
import os
import pickle

import pytest
import torch

from gradcam_cli.errors import UsageError

from helpers import SAMPLES, assert_usage_error, deny_reading, one_line, run


def _explain_with(weights, out, *extra):
    return run(
        "explain",
        SAMPLES / "cat.png",
        "-o",
        out,
        "--model",
        "resnet18",
        "--num-classes",
        "3",
        "--weights",
        weights,
        "--outputs",
        "heatmap",
        *extra,
    )


def test_weights_missing_directory_empty_garbage(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pth").write_text("hello, I am not a checkpoint")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    for weights, needle in (
        (tmp_path / "nope.pt", "no such file"),
        (tmp_path, "is a directory"),
        (tmp_path / "empty.pt", "empty file"),
        (tmp_path / "garbage.pth", "not a readable checkpoint"),
        (tmp_path / "garbage.safetensors", "not a readable checkpoint"),
    ):
        result = _explain_with(weights, out)
        assert_usage_error(result, f"--weights {weights}: {needle}", out)


def test_weights_permission_denied(tmp_path, resnet18_state, monkeypatch):
    path = tmp_path / "locked.pt"
    torch.save(resnet18_state, path)
    deny_reading(monkeypatch, path)  # torch.load opens the file with the builtin open
    assert_usage_error(_explain_with(path, tmp_path / "out"), f"--weights {path}: permission denied", tmp_path / "out")


def test_weights_that_do_not_fit_list_the_keys(tmp_path, resnet18_state):
    from safetensors.torch import save_file

    out = tmp_path / "out"
    missing = {k: v for k, v in resnet18_state.items() if not k.startswith("layer4.1.")}
    save_file(missing, tmp_path / "missing.safetensors")
    result = _explain_with(tmp_path / "missing.safetensors", out)
    assert_usage_error(result, "missing keys: layer4.1.conv1.weight", out)
    unexpected = {**resnet18_state, "extra.weight": torch.zeros(3), "head.bias": torch.zeros(2)}
    torch.save({"model": unexpected}, tmp_path / "unexpected.pt")
    result = _explain_with(tmp_path / "unexpected.pt", out)
    assert_usage_error(result, "unexpected keys: extra.weight, head.bias", out)
    result = run(
        "explain", SAMPLES / "cat.png", "-o", out, "--model", "resnet18", "--weights", tmp_path / "unexpected.pt"
    )  # 3-class head on a 1000-class model
    assert_usage_error(result, "mis-shaped keys (file != model): fc.weight (3, 512) != (1000, 512)", out)
    assert "--num-classes" in result.stderr


class _RunsShell:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class _WritesFile:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.sentinel)!r}, 'w').write('pwned')",)


class _OpensFile:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return builtins.open, (str(self.sentinel), "w")


@pytest.mark.parametrize(
    "payload,writer,suffix",
    [
        (_RunsShell, "torch", ".pt"),
        (_WritesFile, "torch", ".pth"),
        (_RunsShell, "pickle", ".pt"),
        (_OpensFile, "pickle", ".pth"),
        (_WritesFile, "pickle", ".bin"),
    ],
)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, resnet18_state, monkeypatch, payload, writer, suffix):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not switch the safe loader off
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / f"evil{suffix}"
    obj = {**resnet18_state, "fc.bias": payload(sentinel)}
    if writer == "torch":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=4)
    out = tmp_path / "out"
    result = _explain_with(path, out)
    assert_usage_error(result, f"--weights {path}: refused to load", out)
    assert "could run code" in result.stderr
    assert not sentinel.exists(), "the pickle's code ran"


def test_whole_model_pickle_is_refused_with_the_fix(tmp_path):
    import timm

    from gradcam_cli.model.weights import read_state_dict

    path = tmp_path / "model.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3), path)
    with pytest.raises(UsageError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "timm.models.resnet.ResNet" in message and "state_dict" in message and one_line(message)
    assert "\x1b" not in message


def test_non_string_keys_are_not_a_state_dict(tmp_path):
    from gradcam_cli.model.weights import read_state_dict

    torch.save({0: torch.zeros(1), 1: torch.ones(1)}, tmp_path / "ints.pt")
    with pytest.raises(UsageError, match="no state_dict of tensors"):
        read_state_dict(tmp_path / "ints.pt")
