"""apply_changes: Dockerfile-style --change instructions on a container config."""

from __future__ import annotations

import pytest

import errdefs
from images_svc.changes import apply_changes, split_words


def test_cmd_and_entrypoint_forms() -> None:
    c = apply_changes({}, ['CMD ["/bin/echo", "hi"]'])
    assert c["Cmd"] == ["/bin/echo", "hi"]
    c = apply_changes({}, ["cmd echo hello world"])
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hello world"]
    c = apply_changes({"Cmd": ["old"]}, ["ENTRYPOINT /start.sh"])
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/start.sh"]
    assert c["Cmd"] is None  # a new entrypoint resets the default command
    c = apply_changes({}, ['CMD ["x"]', 'ENTRYPOINT ["/e"]'])
    assert (c["Cmd"], c["Entrypoint"]) == (["x"], ["/e"])


def test_env_forms() -> None:
    c = apply_changes({"Env": ["PATH=/bin", "A=old"]},
                      ["ENV A=1 B=\"two words\" C=three\\ words", "ENV D the rest  of line"])
    assert c["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=three words", "D=the rest  of line"]


def test_expose_label_volume_user_workdir_stopsignal_onbuild() -> None:
    c = apply_changes({"WorkingDir": "/app"}, [
        "EXPOSE 80 53/udp 8000-8001",
        'LABEL a=b "c d"=e',
        'VOLUME ["/data", "/logs"]',
        "VOLUME /cache /tmp",
        "USER 1000:1000",
        "WORKDIR sub",
        "STOPSIGNAL SIGKILL",
        "ONBUILD RUN echo hi",
    ])
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c["Labels"] == {"a": "b", "c d": "e"}
    assert c["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}, "/tmp": {}}
    assert c["User"] == "1000:1000"
    assert c["WorkingDir"] == "/app/sub"
    assert c["StopSignal"] == "SIGKILL"
    assert c["OnBuild"] == ["RUN echo hi"]


def test_healthcheck() -> None:
    c = apply_changes({}, ["HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/"])
    assert c["Healthcheck"] == {"Interval": 5_000_000_000, "Retries": 3,
                                "Test": ["CMD-SHELL", "curl -f http://x/"]}
    assert apply_changes({}, ["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}


def test_input_not_mutated() -> None:
    orig = {"Env": ["A=1"]}
    apply_changes(orig, ["ENV A=2"])
    assert orig == {"Env": ["A=1"]}


@pytest.mark.parametrize("change,msg", [
    ("RUN echo hi", "RUN is not a valid change command"),
    ("from busybox", "FROM is not a valid change command"),
    ("ADD a b", "ADD is not a valid change command"),
    ("EXPOSE abc", "invalid containerPort: abc"),
    ("ENV", "ENV requires at least one argument"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
])
def test_errors(change: str, msg: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=msg):
        apply_changes({}, [change])


def test_split_words_quotes() -> None:
    assert split_words("a 'b c' \"d \\\" e\" f\\ g") == ["a", "b c", 'd " e', "f g"]
    with pytest.raises(errdefs.InvalidArgument):
        split_words("'unterminated")
