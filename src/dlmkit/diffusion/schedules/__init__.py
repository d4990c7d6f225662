"""Noise schedules of the discrete diffusion kinds; importing a module here registers its schedule."""

from dlmkit.diffusion.schedules.base import (  # noqa: F401
    SCHEDULES, Geometric, LogLinear, NoiseSchedule, get_schedule, schedule_from_options,
)
from dlmkit.diffusion.schedules.cosine import Cosine  # noqa: F401
