"""Users, teams (cost centres), memberships with roles, and API tokens."""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property


class UserManager(BaseUserManager):
    """Manager for the email-identified :class:`User` (there is no username)."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        """Create a member; ``password=None`` makes an unusable password."""
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        """Create an admin (staff and superuser)."""
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who logs in with an email address and a password."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email

    @property
    def primary_team(self) -> "Team | None":
        """The team a generation is booked to by default: the first membership's team.

        Read from the database each time, unless the instance was loaded with it (the API's
        token lookup reads it in the same query and calls :meth:`note_primary_team`: one
        read per request)."""
        if "_primary_team" in self.__dict__:
            return self.__dict__["_primary_team"]
        membership = self.memberships.select_related("team").order_by("id").first()
        return membership.team if membership else None

    def note_primary_team(self, team: "Team | None") -> None:
        """Remember ``team`` as this instance's :attr:`primary_team` (read in the caller's query)."""
        self.__dict__["_primary_team"] = team

    def note_team_ids(self, team_ids: list[int]) -> None:
        """Remember the ids of this user's teams (read in the caller's query; ``generations.selectors.team_ids_of``)."""
        self.__dict__["_team_ids"] = list(team_ids)

    @cached_property
    def admin_teams(self) -> list["Team"]:
        """The teams this user is a team admin of (for the "Team" menu), by name; read once per request."""
        return [m.team for m in self.memberships.filter(role=Membership.Role.TEAM_ADMIN).select_related("team").order_by("team__name")]


class Team(models.Model):
    """A cost centre: members' generations and spend are booked to it."""

    name = models.CharField(max_length=120, unique=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone used to align budget periods (e.g. Europe/Paris)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a team, with a role."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        TEAM_ADMIN = "team_admin", "Team admin"
        FINANCE = "finance", "Finance"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


def hash_token(raw: str) -> str:
    """SHA-256 hex digest of a raw API token (tokens are random, so no salt is needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A per-user bearer token for the REST API. Only the SHA-256 hash is stored.

    ``scope`` is ``read`` (GET only) or ``read_write``; ``expires_at`` (UTC, optional) and
    ``revoked_at`` end it (the API answers 401). ``last_used_at`` is refreshed at most once
    per :attr:`TOUCH_EVERY` (a conditional UPDATE), never on every request.
    """

    PREFIX = "hs_"
    #: How stale ``last_used_at`` may get before a request writes it again.
    TOUCH_EVERY = timedelta(minutes=1)

    class Scope(models.TextChoices):
        READ = "read", "Read"
        READ_WRITE = "read_write", "Read and write"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ_WRITE)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.user} …{self.last4}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and not self.is_expired

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.READ_WRITE

    @classmethod
    def issue(
        cls, *, user, name: str = "", scope: str = Scope.READ_WRITE, expires_at: datetime | None = None
    ) -> tuple["ApiToken", str]:
        """Create a token for ``user``; returns ``(row, raw_token)``. The raw token is shown once.

        ``scope``: a :class:`ApiToken.Scope` value; ``expires_at``: an aware datetime or None.
        """
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(
            user=user, name=name, scope=scope, expires_at=expires_at, token_hash=hash_token(raw), last4=raw[-4:]
        )
        return row, raw
