"""W&B as its users expect: `wandb=auto` is online exactly when W&B itself would find credentials, and
system metrics and console capture are on unless the `wandb=` value switches them off."""
import pytest

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.track import WandbTracker, parse_wandb, wandb_mode, wandb_settings

KEY = "0123456789abcdef0123456789abcdef01234567"  # W&B's format: 40 characters


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """A user with no W&B login at all: no key in the environment, an empty home, no netrc."""
    import wandb

    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".config" / "wandb"))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    wandb.teardown()  # wandb keeps the settings it first read for the whole process
    yield tmp_path
    wandb.teardown()


def test_auto_is_offline_without_any_credentials(no_credentials):
    assert wandb_mode("auto") == "offline"


def test_auto_is_online_with_an_api_key_in_the_environment(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert wandb_mode("auto") == "online"


def test_auto_is_online_after_wandb_login_wrote_its_netrc_entry(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")  # what `wandb login` writes
    netrc.chmod(0o600)
    assert wandb_mode("auto") == "online"


def test_a_netrc_entry_for_another_host_is_not_a_wandb_login(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text(f"machine github.com\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    assert wandb_mode("auto") == "offline"


def test_an_explicit_mode_or_wandb_mode_wins_over_credentials(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert wandb_mode("offline") == "offline" and wandb_mode("off") is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto,nostats") == "offline"


def test_system_metrics_and_console_capture_are_on_unless_switched_off():
    default = wandb_settings("auto")
    assert default.x_disable_stats is False and default.console != "off"
    quiet = wandb_settings("online,nostats,noconsole")
    assert quiet.x_disable_stats is True and quiet.console == "off"
    assert parse_wandb("offline,noconsole") == parse_wandb("offline,noconsole")
    assert parse_wandb("offline,noconsole").stats and not parse_wandb("offline,noconsole").console


@pytest.mark.parametrize("value", ["loud", "auto,loud", "auto,nostats,nostats", "nostats"])
def test_a_bad_wandb_value_is_refused_naming_the_key_and_what_is_allowed(value):
    with pytest.raises(UsageError, match=r"wandb=.*allowed a mode \(auto, off, offline, online\).*nostats"):
        RunConfig(params=1e5, tokens=1e5, wandb=value)


def test_a_finished_training_run_logs_its_result_as_an_artifact_for_the_lineage(tmp_path, offline_run):
    tracker = WandbTracker(str(tmp_path), mode="offline", project="scaling", run_id="r-7", name="r-7", group="s1")
    tracker.start({"config": {"wandb": "offline,nostats", "lr": 1e-3}, "resolved": {"tokens": 4096}})
    tracker.log({"step": 1, "tokens": 4096, "flops": 1e9, "loss": 3.0, "eval_loss": 2.9})
    tracker.finish({"status": "complete", "eval_loss": 2.9, "params": 1e5, "tokens": 4096, "flops": 1e9})
    rec = offline_run(str(tmp_path / "wandb"), "eval_loss")
    (artifact,) = [a for a in rec["artifacts"] if a["type"] == "run-result"]
    assert artifact["name"] == "run-r-7" and artifact["files"] == ["record.json", "summary.json"]
    assert artifact["metadata"]["eval_loss"] == 2.9
