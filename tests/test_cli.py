from robust_core.train import main


def test_train_command_trains_then_reuses(capsys):
    args = ["--train-subset", "300", "--epochs", "1", "--quiet", "--name", "cli model"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "cli model" in first and "trained in" in first and "test accuracy" in first
    assert main(args) == 0
    assert "already in the store (not retrained)" in capsys.readouterr().out


def test_train_command_rejects_bad_input(capsys):
    assert main(["--arch-kwargs", "{bad json", "--quiet"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["--lr", "nan", "--quiet"]) == 2
    assert "lr must be a number" in capsys.readouterr().err


def test_classviz_command_writes_a_morph_and_refuses_bad_input(tmp_path, capsys):
    from PIL import Image

    from robust_core.classviz.__main__ import main as classviz
    from robust_core.store import ModelStore

    assert main(["--train-subset", "300", "--epochs", "1", "--quiet"]) == 0
    model_id = ModelStore().list()[0].model_id
    out = tmp_path / "morph.png"
    assert classviz(["--model", model_id[:6], "--target", "3", "--start", "test:0", "--steps", "20",
                     "--out", str(out)]) == 0
    assert "target 3: p =" in capsys.readouterr().out
    assert Image.open(out).size[1] == 4 * 28
    # The seed recipe on request, one option overriding it: a different morph from the same start.
    assert classviz(["--model", model_id, "--target", "3", "--start", "test:0", "--steps", "20", "--recipe", "seed",
                     "--lr", "0.2", "--out", str(tmp_path / "seed.png")]) == 0
    assert "target 3: p =" in capsys.readouterr().out and (tmp_path / "seed.png").read_bytes() != out.read_bytes()
    assert classviz(["--model", model_id, "--target", "all", "--steps", "5", "--out", str(tmp_path / "all.gif")]) == 0
    animation = Image.open(tmp_path / "all.gif")
    assert animation.n_frames >= 2 and animation.size[0] > 10 * 4 * 28  # the ten targets side by side
    assert classviz(["--model", "ffff", "--target", "3", "--out", str(out)]) == 2
    assert "no stored model id starts with 'ffff'" in capsys.readouterr().err
    assert classviz(["--model", model_id, "--target", "12", "--out", str(out)]) == 2
    assert "--target must be" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a picture")
    assert classviz(["--model", model_id, "--target", "3", "--start", str(tmp_path / "notes.txt"),
                     "--out", str(out)]) == 2
    assert "not an image" in capsys.readouterr().err


def test_the_sweep_takes_the_training_flags_of_the_train_command_and_its_stored_command_rebuilds_the_config():
    import shlex

    from robust_core.sweep import build_parser as sweep_parser
    from robust_core.sweep import grid_from_args, train_configs
    from robust_core.train import build_parser
    from robust_core.training import TrainConfig
    from robust_core.training.flags import config_from_arguments, train_command

    flags = ["--dataset", "fashion_mnist", "--arch", "mlp", "--arch-kwargs", '{"hidden": [32]}', "--optimizer", "sgd",
             "--lr", "0.01", "--momentum", "0.5", "--weight-decay", "0.001", "--schedule", "cosine", "--epochs", "3",
             "--batch-size", "64", "--dropout", "0.1", "--label-smoothing", "0.05", "--train-subset", "500"]
    single = config_from_arguments(build_parser().parse_args([*flags, "--method", "gfa", "--seed", "2"]))
    [from_grid] = train_configs(grid_from_args("train", sweep_parser("train").parse_args(
        [*flags, "--method", "gfa", "--seed", "2"])))
    assert from_grid == single and single.optimizer == "sgd" and single.train_subset == 500
    command = train_command(single)
    assert config_from_arguments(build_parser().parse_args(shlex.split(command)[3:])) == single
    assert train_command(TrainConfig()) == "python -m robust_core.train "  # only what differs from the defaults


def test_robust_lab_runs_each_module_s_command_line_and_refuses_an_unknown_command(capsys, monkeypatch):
    import pytest

    from robust_core import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["evaluate", "--help"])
    assert exited.value.code == 0 and "--model" in capsys.readouterr().out
    assert cli.main(["atack"]) == 2 and "unknown command 'atack'" in capsys.readouterr().err
    launched = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command, **kwargs: launched.append((command, kwargs)) or 0)
    assert cli.main(["--server.port", "8600"]) == 0  # no command: the dashboard, options for Streamlit
    [(command, kwargs)] = launched
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("app.py") and command[5:] == [
        "--server.port", "8600"]
    assert kwargs["cwd"] == cli.CHECKOUT  # where .streamlit/config.toml is read
