"""A mistake on the command line itself (unknown flag, bad choice, missing argument) is one line and
exit 2, like every other bad input; argparse alone prints the whole usage block first."""
import pytest

from scaling.cli import main


@pytest.mark.parametrize("argv,says", [
    (["train", "--bogus"], "scaling: error: unrecognized arguments: --bogus (see scaling --help)"),
    (["fit", "--law", "nope", "x.csv"], "scaling fit: error: argument --law: invalid choice: 'nope'"),
    (["sweep", "agent"], "scaling sweep agent: error: the following arguments are required: SWEEP"),
    (["data", "prepare", "src"], "scaling data prepare: error: the following arguments are required: --out"),
    (["nocommand"], "scaling: error: argument COMMAND: invalid choice: 'nocommand'"),
])
def test_argument_mistakes_are_one_line_and_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(says) and len(err.strip().splitlines()) == 1, err
