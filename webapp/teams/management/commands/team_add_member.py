from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.teams.models import Membership, Team
from webapp.teams.services import team_add_member


class Command(BaseCommand):
    help = "Add a user to a team as a member or a team admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("team")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.MEMBER)

    def handle(self, *args: object, **options: str) -> None:
        try:
            team = Team.objects.get(name=options["team"])
        except Team.DoesNotExist:
            raise CommandError(f"no team named {options['team']!r}; create it with team_create") from None
        try:
            membership = team_add_member(team=team, username=options["username"], role=options["role"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {options['username']!r}") from None
        self.stdout.write(f"{membership.user} is now {membership.role} of {team.name}")
