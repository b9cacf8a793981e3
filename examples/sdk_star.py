"""The star team of examples/star.yaml, built in Python."""

import agentfab
from agentfab import Agent
from agentfab.aggregators import Majority
from agentfab.topologies import star

workers = [Agent(name=f"worker-{i}", max_tokens=24) for i in range(1, 6)]  # as count: 5 names them
team = star(workers, aggregator=Majority())
result = agentfab.run(team, "What is the capital of France?", seed=1)  # embedded model

for message in result.messages:
    print(f"{message.id:<8} {message.answer!s:<24} {message.usage.total_tokens} tokens")
print("answer:", result.answer)
