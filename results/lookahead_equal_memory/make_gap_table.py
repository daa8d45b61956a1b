"""Issue #6 table: lookahead vs the best existing policy, and P99 gap closed (run from the repo root)."""
import pandas as pd
df=pd.read_parquet('results/lookahead_equal_memory/summaries.parquet')
t=df.groupby(['group','policy'])[['ttft_median_ms','ttft_p99_ms','e2e_mean_ms']].mean()
rows=[]
for g in sorted(df.group.unique()):
    x=t.loc[g]
    best={m: x.loc[['lru','slora','overlap','history'],m].min() for m in x.columns}
    la=x.loc['lookahead']
    def gap(orc):
        d=x.loc['lru','ttft_p99_ms']-x.loc[orc,'ttft_p99_ms']
        return 'n/a (lru at oracle)' if d<=1 else f"{(x.loc['lru','ttft_p99_ms']-la.ttft_p99_ms)/d:.0%}"
    rows.append(dict(workload=g, **{f"{m.split('_')[0]} {m.split('_')[1]} lookahead/best": f"{la[m]:.0f}/{best[m]:.0f} ({la[m]/best[m]-1:+.1%})" for m in x.columns}, **{"P99 gap closed vs zero_load": gap('zero_load'), "vs resident": gap('resident')}))
print(pd.DataFrame(rows).to_markdown(index=False))
