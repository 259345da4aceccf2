import uuid

from django.core.management.base import CommandError

from agents.models import Agent
from agents.services.lifecycle import agent_revoke
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = "Revoke an agent: its live connection is closed and it can no longer connect."

    def add_arguments(self, parser):
        parser.add_argument("agent_id", help="the agent's id (a UUID, as shown in the admin)")

    def handle(self, *args, agent_id, **options):
        try:
            agent = Agent.objects.filter(pk=uuid.UUID(agent_id)).first()
        except ValueError:
            raise CommandError(f"Not an agent id: {agent_id!r}.") from None
        if agent is None:
            raise CommandError(f"No agent with id {agent_id}.")
        already = agent.revoked_at is not None
        agent = agent_revoke(agent=agent)
        self.stdout.write(f"Agent {agent.pk} ({agent.name}) {'was already' if already else 'is now'} revoked.")
