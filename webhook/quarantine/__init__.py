"""`podmedic quarantine`: keep a long-NotReady pod for debugging while its workload gets a
replacement (docs/quarantine.md). Never in the admission path: its own Deployment.

The sansio split of the webhook, again: a pure core that no cluster is needed to test --
`reasons` (the codes that label events and metrics), `labels` (selectors, quantities),
`decide` (a namespace's objects + settings + a clock -> decisions) and `patches` (a decision ->
explicit JSON Patch operations) -- and a thin I/O shell: `controller` (passes, events, metrics),
`pods` (the watch cache), `lease` (leader election) and `cluster` (the API calls).
"""
