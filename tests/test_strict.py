"""One strict_kwargs for functions and dataclasses: the valid names come from the signature."""

from __future__ import annotations

import dataclasses

import pytest

from harmony_lab._strict import strict_kwargs


def test_a_function_and_a_dataclass_say_the_same_thing():
    @strict_kwargs
    def connect(url: str, *, timeout: float = 1.0, retries: int = 3) -> tuple[str, float, int]:
        return url, timeout, retries

    @strict_kwargs
    @dataclasses.dataclass
    class Spec:
        table: str
        schema: str = "public"

    assert connect("u", retries=1) == ("u", 1.0, 1)
    assert Spec("t", schema="s") == Spec("t", "s")
    with pytest.raises(TypeError) as fn_err:
        connect("u", timout=2)
    with pytest.raises(TypeError) as cls_err:
        Spec(tabel="t")
    assert str(fn_err.value) == (
        "connect() got unknown keyword argument(s) 'timout' (did you mean 'timeout'?); "
        "valid: url, timeout, retries"
    )
    assert str(cls_err.value) == (
        "Spec() got unknown keyword argument(s) 'tabel' (did you mean 'table'?); valid: table, schema"
    )


def test_a_signature_with_kwargs_is_left_alone():
    def anything(**options: object) -> dict[str, object]:
        return options

    assert strict_kwargs(anything) is anything


@pytest.mark.parametrize(
    ("make", "owner"),
    [
        (lambda: __import__("harmony_lab").RealtimeConnectionManager, "RealtimeConnectionManager"),
        (lambda: __import__("harmony_lab").Inspector, "Inspector"),
    ],
)
def test_public_constructors_list_exactly_their_signature(make, owner):
    """No hand-kept option list: the names an error offers are the constructor's own parameters, so a
    keyword added to the signature is accepted and offered without editing anything else."""
    import inspect

    from harmony_lab._strict import keyword_names

    cls = make()
    with pytest.raises(TypeError) as info:
        cls("http://127.0.0.1:1", "key", heartbeat_intervall=1) if owner != "Inspector" else cls(hieght=3)
    message = str(info.value)
    assert message.startswith(f"{owner}() got unknown keyword argument(s)")
    offered = message.split("; valid: ", 1)[1].split(", ")
    assert offered == keyword_names(inspect.unwrap(cls.__init__))
    assert "did you mean" in message
