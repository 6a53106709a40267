from .roles import ABSENT, CONDITION, TARGET, RoleConfig, sample_roles
from .schedule import Diffusion

__all__ = ["Diffusion", "RoleConfig", "sample_roles", "CONDITION", "TARGET", "ABSENT"]
