"""
Runs one Python recipe of spec/04-exec-stream.txt ("Common Recipes"), its code
as the page prints it, against a Hangar: run_recipe.py BASE_URL API_KEY COMPUTER_ID NAME.
"""
import sys

from stream_client import Client

base_url, api_key, computer_id, name = sys.argv[1:5]
client = Client(base_url, api_key)


def monitor_a_build():
    for event in client.exec.stream(computer_id, command="make build", timeout=300):
        if event.type == "output":
            print(event.data["line"], end="")
        elif event.type == "exit":
            if event.data["exit_code"] != 0:
                raise RuntimeError(f"Build failed with exit code {event.data['exit_code']}")
            print("Build succeeded")
            break


def timeout_handling():
    try:
        for event in client.exec.stream(computer_id, command="long-task", timeout=60):
            if event.type == "timeout":
                print(f"Command killed after {event.data['timeout_seconds']}s")
                break
            elif event.type == "exit":
                break
    except Exception as e:
        print(f"Stream error: {e}")


{"monitor-a-build": monitor_a_build, "timeout-handling": timeout_handling}[name]()
