from django.apps import AppConfig


def _rollups_keep_deleted_agent(sender, instance, **kwargs) -> None:
    from health.services.rollups import signin_rollups_detach_agent

    signin_rollups_detach_agent(agent_id=instance.pk)


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "Agent health"

    def ready(self) -> None:
        from django.db.models.signals import pre_delete

        # agents/ knows nothing of health/: its rollups follow an agent's deletion from here (into the tenant's
        # rows of no agent, so the history keeps its sign-ins).
        pre_delete.connect(_rollups_keep_deleted_agent, sender="agents.Agent", dispatch_uid="health-rollups-agent")
