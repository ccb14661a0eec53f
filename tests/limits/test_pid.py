"""The PI(D) controller behind the shedder: step response, clamping and no integral windup."""

from __future__ import annotations

import math

import pytest

from carebench.limits.pid import PidController

DT = 0.1


def test_output_rises_step_by_step_while_the_error_stays_positive() -> None:
    """A constant positive error raises the output by ki*e*dt per step (the integral term)."""
    controller = PidController(kp=0.0, ki=2.0, high=10.0)
    outputs = [controller.update(1.0, DT) for _ in range(5)]
    assert outputs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_proportional_term_answers_the_current_error_only() -> None:
    """With ki = 0 the output is kp*e, back to low as soon as the error is gone."""
    controller = PidController(kp=0.5, ki=0.0, high=10.0)
    assert controller.update(3.0, DT) == pytest.approx(1.5)
    assert controller.update(0.0, DT) == 0.0


def test_output_is_clamped_to_its_range() -> None:
    """However large the error, the output stays within [low, high]."""
    controller = PidController(kp=5.0, ki=5.0, low=0.0, high=1.0)
    assert controller.update(100.0, DT) == 1.0
    assert controller.update(-100.0, DT) == 0.0


def test_no_windup_after_a_long_saturation() -> None:
    """After 10 000 steps pinned at high, a negative error moves the output at once and it is
    back at low after high/(ki*|e|*dt) steps, as if the saturation had lasted one step."""
    controller = PidController(kp=0.0, ki=3.0, high=math.log(1000.0))
    for _ in range(10_000):
        controller.update(3.0, DT)
    assert controller.output == controller.high
    assert controller.integral == controller.high
    first = controller.update(-1.0, DT)
    assert first < controller.high
    steps = 1
    while controller.output > 0.0:
        controller.update(-1.0, DT)
        steps += 1
    assert steps == math.ceil(controller.high / (3.0 * DT))


def test_derivative_term_reacts_to_the_change_of_error() -> None:
    """kd*(de/dt) adds to the output when the error grows, and nothing on the first sample."""
    controller = PidController(kp=0.0, ki=0.0, kd=0.1, low=-10.0, high=10.0)
    assert controller.update(1.0, DT) == 0.0
    assert controller.update(2.0, DT) == pytest.approx(1.0)


@pytest.mark.parametrize(("error", "dt"), [(math.nan, DT), (math.inf, DT), (1.0, 0.0)])
def test_unusable_samples_leave_the_output_alone(error: float, dt: float) -> None:
    """A NaN or infinite error, or no elapsed time, changes nothing (and poisons nothing)."""
    controller = PidController(kp=1.0, ki=1.0, high=5.0)
    controller.update(1.0, DT)
    before = (controller.output, controller.integral)
    controller.update(error, dt)
    assert (controller.output, controller.integral) == before
    assert controller.update(1.0, DT) > before[0]


def test_low_above_high_is_refused() -> None:
    """A controller whose range is empty is a programming error."""
    with pytest.raises(ValueError, match="low"):
        PidController(kp=1.0, ki=1.0, low=2.0, high=1.0)
