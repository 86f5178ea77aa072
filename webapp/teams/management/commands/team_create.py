from django.core.management.base import BaseCommand, CommandParser

from webapp.teams.services import team_create


class Command(BaseCommand):
    help = "Create a team (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: object, **options: str) -> None:
        team = team_create(name=options["name"])
        self.stdout.write(f"team {team.name} ({team.slug})")
