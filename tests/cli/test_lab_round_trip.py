"""The lab round trip from the command line: an H&E slide before sequencing -> `scr2st select`
-> the lab's counts -> `scr2st import-counts`; spot lists for --lock/--exclude from files;
the selection written as GeoJSON; the reference's cell-type columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.cli import main
from napari_scr2st.cli._spot_lists import parse_spot_list

SYN = ["--n-spots", "200", "--encoder", "patch-stats", "--quiet"]


def test_her2st_slide_without_counts_select_then_import_real_counts(shared_data, tmp_path, capsys):
    img = next((shared_data / "her2st" / "data" / "ST-imgs" / "C" / "C3").glob("*.jpg"))
    state, r0 = tmp_path / "run.npz", tmp_path / "r0.csv"
    rc = main(["select", str(img), "--platform", "legacy_st", "--um-per-px", "0.69", "--encoder", "patch-stats",
               "--sampler", "kcenter", "--budget", "10%", "--state", str(state), "--out", str(r0), "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    from napari_scr2st.io.export import read_selection_csv

    sel = read_selection_csv(r0)
    n_lattice = int(out.err.split(" spots in ")[0].split()[-1])
    budget = round(0.1 * n_lattice)
    assert n_lattice > 150 and len(sel) in (budget // 2, budget - budget // 2)  # round 1 of 2
    assert set(sel["round"]) == {1} and "round 1 of 2 selected" in out.out
    assert sel["spot_id"].str.fullmatch(r"\d+x\d+").all() and set(sel["picked_by"]) == {"kcenter"}
    # the lab sequences the spots; only ids present in the counts file can come back
    counts = pd.read_csv(shared_data / "her2st" / "data" / "ST-cnts" / "C3.tsv.gz", sep="\t", index_col=0)
    back = [i for i in sel["spot_id"] if i in counts.index]
    assert len(back) >= len(sel) // 2
    lab = counts.loc[back].rename_axis("spot_id").reset_index()
    lab.to_csv(tmp_path / "r0_counts.csv", index=False)
    rc = main(["import-counts", str(tmp_path / "r0_counts.csv"), "--state", str(state)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"imported counts of {len(back)} spots ({counts.shape[1]} genes)" in out.out
    missing = len(sel) - len(back)
    assert (f"round 1 of 2: {missing} spots still wait for their counts" if missing
            else "round 1 of 2 sequenced; next: round 2 of 2") in out.out
    from napari_scr2st.sampling import SelectionState

    st = SelectionState.load(state)
    view = st.measured_view()
    assert st.spot_ids[view.index].tolist() == sorted(back, key=list(st.spot_ids).index)
    got = pd.DataFrame(view.counts.toarray(), index=st.spot_ids[view.index], columns=view.genes)
    np.testing.assert_array_equal(got.loc[back, counts.columns].to_numpy(), counts.loc[back].to_numpy())
    # the same file again is refused (no silent double import), the state stays as it is
    before = state.read_bytes()
    assert main(["import-counts", str(tmp_path / "r0_counts.csv"), "--state", str(state)]) == 2
    assert "already have imported counts" in capsys.readouterr().err and state.read_bytes() == before


def test_spot_lists_from_the_command_line_and_files(tmp_path):
    assert parse_spot_list("10x12, 11x13,", "--lock").ids == ["10x12", "11x13"]
    one = tmp_path / "ids.txt"
    one.write_text("# picked by the pathologist\n10x12\n\n11x13\n")
    for text in (str(one), f"@{one}"):
        sl = parse_spot_list(text, "--lock")
        assert sl.ids == ["10x12", "11x13"] and sl.sections == [None, None]
    (tmp_path / "head.txt").write_text("spot_id\n10x12\n")
    assert parse_spot_list(str(tmp_path / "head.txt"), "--lock").ids == ["10x12"]
    (tmp_path / "s.csv").write_text("spot_id,section\n10x12,C3\n11x13,C4\n")
    (tmp_path / "s.tsv").write_text("section\tspot_id\n10x12_ignored\t10x12\n")
    sl = parse_spot_list(str(tmp_path / "s.csv"), "--exclude")
    assert sl.ids == ["10x12", "11x13"] and sl.sections == ["C3", "C4"]
    assert parse_spot_list(str(tmp_path / "s.tsv"), "--exclude").ids == ["10x12"]
    (tmp_path / "bare.csv").write_text("10x12,C3\n11x13,C4\n")
    assert parse_spot_list(str(tmp_path / "bare.csv"), "--lock").sections == ["C3", "C4"]
    # long lists: a file of 500 ids, and a long command line that is no file name
    many = [f"{x}x{y}" for x in range(1, 26) for y in range(1, 21)]
    (tmp_path / "many.txt").write_text("\n".join(many))
    assert parse_spot_list(f"@{tmp_path / 'many.txt'}", "--lock").ids == many
    assert parse_spot_list(",".join(many), "--lock").ids == many
    from napari_scr2st.cli._common import CLIError

    with pytest.raises(CLIError, match="--lock @nope.txt: file nope.txt not found"):
        parse_spot_list("@nope.txt", "--lock")


def test_section_prefixed_ids_resolve_on_a_pool_of_two_sections():
    from napari_scr2st.cli._common import CLIError
    from napari_scr2st.sampling import Pool

    pool = Pool(["10x12", "11x13"] * 2, ["C3", "C3", "C4", "C4"], np.zeros((4, 2)))
    assert parse_spot_list("C4:10x12,C3:11x13", "--lock").resolve(pool, "--lock").tolist() == [2, 1]
    with pytest.raises(CLIError, match="several sections.*section:id"):
        parse_spot_list("10x12", "--lock").resolve(pool, "--lock")


def test_select_with_lock_file_exclude_own_csv_and_geojson_out(tmp_path, capsys):
    first = tmp_path / "r.csv"
    assert main(["select", *SYN, "--sampler", "kcenter", "--budget", "20", "--rounds", "1", "--out", str(first)]) == 0
    picked = pd.read_csv(first)["spot_id"].tolist()
    lock = tmp_path / "lock.txt"
    lock.write_text("\n".join(picked[:3]) + "\n")
    out = tmp_path / "r.geojson"
    # exclude: the tool's own selection CSV (every spot of the first run but the locked ones is excluded)
    rest = tmp_path / "rest.csv"
    from napari_scr2st.io.export import read_selection_csv, write_selection

    write_selection(read_selection_csv(first).iloc[3:], rest)
    assert main(["select", *SYN, "--sampler", "kcenter", "--budget", "20", "--rounds", "1", "--lock", f"@{lock}",
                 "--exclude", str(rest), "--out", str(out)]) == 0, capsys.readouterr().err
    gj = json.loads(out.read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 20
    names = [f["properties"]["name"] for f in gj["features"]]
    assert set(picked[:3]) <= set(names) and not set(picked[3:]) & set(names)
    by = {f["properties"]["name"]: f["properties"]["classification"]["name"] for f in gj["features"]}
    assert {by[i] for i in picked[:3]} == {"manual"}


def test_info_lists_the_reference_celltype_columns(shared_data, capsys):
    assert main(["info", str(shared_data / "sc_reference" / "wu2021_breast_CID4465.h5ad")]) == 0
    out = capsys.readouterr().out
    assert ("candidate cell-type columns (best first; --celltype-key defaults to celltype_major): "
            "celltype_major, celltype_minor, celltype_subset") in out


def test_celltype_key_defaults_to_the_references_best_column(tmp_path, capsys):
    """--celltype-key unset: the reference module picks the column and says which (one warning line)."""
    from napari_scr2st.data import make_sample

    smp = make_sample(200, seed=0)
    ref = smp.reference.copy()
    ref.obs = ref.obs.rename(columns={"celltype_major": "cell_type_label"})
    smp.section.write_h5ad(tmp_path / "sec.h5ad")
    ref.write_h5ad(tmp_path / "ref.h5ad")
    rc = main(["select", str(tmp_path / "sec.h5ad"), "--reference", str(tmp_path / "ref.h5ad"), *SYN,
               "--sampler", "greedy", "--budget", "10", "--rounds", "1", "--simulate", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "scr2st select: warning:" in err and "using obs['cell_type_label'] as cell types" in err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 10
