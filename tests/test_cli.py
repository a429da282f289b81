"""``harmony-lab`` itself: bad input ends in one clear line and exit status 2, or the traceback with -v."""

from __future__ import annotations

import pytest

from harmony_lab.cli import main


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["serve", "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "harmony-lab serve: port must be an integer 0-65535 or None; got 99999",
        "(run with -v to see the traceback)",
    ]


def test_verbose_shows_the_exception_itself():
    with pytest.raises(ValueError, match="port must be an integer 0-65535"):
        main(["-v", "serve", "--port", "99999"])
