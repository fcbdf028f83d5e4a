"""The one training engine (thincam.models.training): schedule, EMA, accumulation, checkpoints,
bf16 and several processes. Each trainer's own kill-and-resume test sits beside its other tests
(test_diffusion, test_restorer, test_dmdiff, test_nsdd)."""

import json
import math

import numpy as np
import pytest
import torch

from thincam.errors import BadInputError
from thincam.models import training


class Line(torch.nn.Module):
    """y = w x + b: small enough for known answers."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.0]))
        self.b = torch.nn.Parameter(torch.tensor([0.0]))

    def forward(self, x):
        return self.w * x + self.b


def regression_step(calls=None):
    def step(model, generator):
        x = torch.rand(8, generator=generator)
        if calls is not None:
            calls.append(1)
        l2 = torch.nn.functional.mse_loss(model(x), 3 * x - 1)
        return training.Losses(l2, l2)

    return step


def test_warmup_and_cosine_known_values():
    schedule = training.Schedule(steps=10, lr=1.0, warmup_steps=2, lr_decay="cosine")
    assert [schedule.lr_factor(k) for k in (0, 1, 5, 10)] == pytest.approx([0.5, 0.5 * (1 + math.cos(math.pi / 10)), 0.5, 0.0])
    constant = training.Schedule(steps=10, lr=1.0, warmup_steps=4)
    assert [constant.lr_factor(k) for k in (0, 3, 9)] == [0.25, 1.0, 1.0]


def test_schedule_keys_are_checked_by_name():
    with pytest.raises(BadInputError, match=r"priors.faces.train.ema_decay = 1.0"):
        training.schedule_from({"steps": 5, "lr": 1e-3, "ema_decay": 1.0}, "priors.faces.train")
    with pytest.raises(BadInputError, match=r"x.lr_decay = 'linear'.*one of \['constant', 'cosine'\]"):
        training.schedule_from({"steps": 5, "lr": 1e-3, "lr_decay": "linear"}, "x")
    schedule = training.schedule_from({"steps": 5, "lr": 1e-3, "batch_size": 9}, "x", {"weight_decay": 0.01})
    assert schedule.weight_decay == 0.01 and schedule.steps == 5  # unrelated keys of the block ignored


def test_training_converges_and_logs_every_step():
    torch.manual_seed(0)
    model = Line()
    schedule = training.Schedule(steps=300, lr=0.2, warmup_steps=10, lr_decay="cosine")
    trained = training.train(model, regression_step(), schedule, phase="line", seed=0, run_id="a")
    assert model.w.item() == pytest.approx(3, abs=0.05) and model.b.item() == pytest.approx(-1, abs=0.05)
    assert [row[1] for row in trained.rows] == list(range(300))
    lrs = [row[2] for row in trained.rows]
    assert lrs == pytest.approx([0.2 * schedule.lr_factor(k) for k in range(300)]) and lrs[0] == pytest.approx(0.02)
    assert not model.training and trained.record["weights"] == "last step"


def test_ema_weights_are_diffusers_ema_of_the_trajectory():
    """Constant gradient sign: Adam moves w by lr every step, so the trajectory is known and the
    saved weight must be diffusers' EMAModel fed that trajectory."""
    from diffusers.training_utils import EMAModel

    class Slope(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0]))

    def step(model, generator):
        return training.Losses(model.w.sum())

    model = Slope()
    schedule = training.Schedule(steps=20, lr=0.01, ema_decay=0.8)
    trained = training.train(model, step, schedule, phase="slope", seed=0, run_id="e")
    shadow = torch.nn.Parameter(torch.tensor([1.0]))
    ema = EMAModel([shadow], decay=0.8)
    for k in range(1, 21):
        with torch.no_grad():
            shadow.fill_(1.0 - 0.01 * k)
        ema.step([shadow])
    ema.copy_to([shadow])
    assert model.w.item() == pytest.approx(shadow.item(), abs=1e-6)
    assert model.w.item() > 1.0 - 0.01 * 20 + 0.01  # the EMA lags the last step
    assert trained.record["weights"] == "ema"


def test_gradient_accumulation_runs_micro_batches_per_step():
    calls = []
    schedule = training.Schedule(steps=6, lr=0.01, grad_accum=3)
    trained = training.train(Line(), regression_step(calls), schedule, phase="line", seed=0, run_id="g")
    assert len(calls) == 18 and len(trained.rows) == 6


def test_checkpoint_of_other_inputs_is_not_resumed(tmp_path, caplog):
    class Stop(Exception):
        pass

    def dying(model, generator):
        if len(calls) == 7:
            raise Stop
        return regression_step(calls)(model, generator)

    calls = []
    schedule = training.Schedule(steps=10, lr=0.01, checkpoint_every=5)
    with pytest.raises(Stop):
        training.train(Line(), dying, schedule, phase="line", seed=0, run_id="first", checkpoint_dir=tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "fingerprint.json").read_text()) == {"fingerprint": "first"}
    other = training.train(Line(), regression_step(), schedule, phase="line", seed=0, run_id="second", checkpoint_dir=tmp_path / "ck")
    assert "other inputs" in caplog.text and len(other.rows) == 10 and other.rows[0][1] == 0
    assert not (tmp_path / "ck").exists()


def test_bf16_steps_run_on_cpu():
    model = Line()
    schedule = training.Schedule(steps=5, lr=0.01, bf16=True)
    trained = training.train(model, regression_step(), schedule, phase="line", seed=0, run_id="b")
    assert all(np.isfinite(row[3]) for row in trained.rows) and trained.record["schedule"]["bf16"]
    plain = training.train(Line(), regression_step(), training.Schedule(steps=5, lr=0.01), phase="line", seed=0, run_id="p")
    assert plain.record["schedule"]["bf16"] is False  # a second precision in one process is allowed


def test_training_files_have_the_shared_columns(tmp_path):
    trained = training.train(Line(), regression_step(), training.Schedule(steps=4, lr=0.01), phase="line", seed=0, run_id="f")
    training.write_training_files(tmp_path, [trained], {"what": "a line"}, "line fit")
    lines = (tmp_path / "loss.csv").read_text().splitlines()
    assert lines[0] == ",".join(training.LOSS_COLUMNS) and len(lines) == 5 and lines[1].startswith("line,0,")
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["what"] == "a line" and record["phases"]["line"]["steps"] == 4
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def _two_process_fit(out_dir):
    from accelerate import PartialState
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # forked from a one-process test session
    torch.manual_seed(0)
    model = Line()
    training.train(model, regression_step(), training.Schedule(steps=20, lr=0.05), phase="line", seed=0, run_id="m")
    rank = PartialState().process_index
    torch.save({"w": model.w.detach().clone(), "b": model.b.detach().clone()}, f"{out_dir}/rank{rank}.pt")


@pytest.mark.slow
def test_two_processes_keep_one_model(tmp_path):
    """accelerate's CPU launcher (gloo): each process draws its own batches, gradients are
    averaged, so both end with the same weights, and not those of one process alone."""
    from accelerate import debug_launcher

    debug_launcher(_two_process_fit, args=(str(tmp_path),), num_processes=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ("w", "b"))
    torch.manual_seed(0)
    alone = Line()
    training.train(alone, regression_step(), training.Schedule(steps=20, lr=0.05), phase="line", seed=0, run_id="m")
    assert not torch.equal(alone.w.detach(), ranks[0]["w"])
