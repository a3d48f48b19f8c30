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
