"""Live class challenges: challenge files (:mod:`.spec`), server-side scoring (:mod:`.scoring`), the lab's reference
numbers (:mod:`.reference`), the boards in the store's SQLite database (:mod:`.board`), and the room that joins them
(:mod:`.room`)."""
from .board import NICKNAME_MAX, RATE_LIMITS, STATES, Board, ChallengeBoard, ChallengeError, Entry, RateLimited, Run
from .room import ChallengeRoom
from .scoring import BadSubmission, canvas_direction, perturbation_norms, perturbed, read_payload, score_fool
from .spec import CHALLENGES_DIR, KINDS, Challenge, budget_limit, parse_challenge, read_challenges

__all__ = ["BadSubmission", "Board", "CHALLENGES_DIR", "Challenge", "ChallengeBoard", "ChallengeError", "ChallengeRoom",
           "Entry", "KINDS", "NICKNAME_MAX", "RATE_LIMITS", "RateLimited", "Run", "STATES", "budget_limit",
           "canvas_direction", "parse_challenge", "perturbation_norms", "perturbed", "read_challenges", "read_payload",
           "score_fool"]
