"""import_counts refuses counts it cannot tie to one section, another gene naming, a truncated
gene set and values that are not raw counts; nothing changes in the state when it refuses."""

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.sampling import SelectionState, import_counts


def _state(sections=("C3",), n=6, genes=None):
    ids = [f"{x}x{y}" for x, y in zip(range(10, 10 + n), range(12, 12 + n), strict=True)]
    st = SelectionState(ids * len(sections), np.repeat(sections, n))
    if genes is not None:
        st.meta["section_genes"] = list(genes)
    return st


GENES = [f"G{i}" for i in range(20)]


def _file(path, ids, genes=GENES, values=None, section=None):
    X = np.arange(len(ids) * len(genes)).reshape(len(ids), len(genes)) % 7 if values is None else values
    df = pd.DataFrame(X, columns=genes)
    df.insert(0, "spot_id", ids)
    if section is not None:
        df.insert(1, "section", section)
    df.to_csv(path, index=False)
    return path


def test_repeated_ids_need_a_section(tmp_path):
    st = _state(("C3", "C4"))
    f = _file(tmp_path / "c.csv", ["10x12", "11x13"])
    with pytest.raises(ValueError, match=r"c\.csv has no 'section' column.*several sections \(C3, C4\)"):
        import_counts(st, f)
    assert not st.measured.any()
    idx = import_counts(st, f, section="C4")
    assert idx.tolist() == [6, 7] and st.sections[idx].tolist() == ["C4", "C4"]
    with pytest.raises(ValueError, match=r"section\(s\) \['C9'\] are not in the selection"):
        import_counts(st, _file(tmp_path / "s.csv", ["12x14"], section="C9"))
    with pytest.raises(ValueError, match="not section 'C3'"):
        import_counts(st, _file(tmp_path / "s4.csv", ["12x14"], section="C4"), section="C3")


def test_one_section_state_takes_its_section(tmp_path):
    st = _state(("C3",))
    assert import_counts(st, _file(tmp_path / "c.csv", ["10x12"])).tolist() == [0]


def test_another_gene_naming_is_refused(tmp_path):
    st = _state(genes=GENES)
    ens = [f"ENSG{i:011d}" for i in range(20)]
    with pytest.raises(ValueError, match=r"only 0 of its 20 gene names match the 20 genes of the section.*ENSG"):
        import_counts(st, _file(tmp_path / "e.csv", ["10x12"], genes=ens))
    # against earlier imports (no section genes known)
    st = _state()
    import_counts(st, _file(tmp_path / "a.csv", ["10x12"]))
    with pytest.raises(ValueError, match="genes of earlier imports"):
        import_counts(st, _file(tmp_path / "e2.csv", ["11x13"], genes=ens))
    assert st.measured.sum() == 1


def test_a_truncated_gene_set_is_refused(tmp_path):
    st = _state(genes=GENES)
    with pytest.raises(ValueError, match=r"its 5 genes cover only 5 of the 20 genes of the section"):
        import_counts(st, _file(tmp_path / "t.csv", ["10x12"], genes=GENES[:5]))
    st = _state()
    import_counts(st, _file(tmp_path / "a.csv", ["10x12"]))
    with pytest.raises(ValueError, match=r"t2\.csv: its 5 genes cover only 5 of the 20 genes of earlier imports"):
        import_counts(st, _file(tmp_path / "t2.csv", ["11x13"], genes=GENES[:5]))


@pytest.mark.parametrize(("value", "what"), [
    (0.6931, "not an integer"), (np.nan, "holds infinite or NaN values"), (np.inf, "holds infinite or NaN values"), (-1, "negative"),
])
def test_values_that_are_not_raw_counts_name_the_column(tmp_path, value, what):
    st = _state()
    X = np.ones((2, len(GENES)))
    X[1, 3] = value
    with pytest.raises(ValueError, match=rf"column 'G3' at spot 11x13 (is )?{what}"):
        import_counts(st, _file(tmp_path / "v.csv", ["10x12", "11x13"], values=X))
    assert not st.measured.any()


def test_text_in_a_gene_column_is_named(tmp_path):
    st = _state()
    df = pd.DataFrame({"spot_id": ["10x12"], "G0": [1], "G1": ["n/a?"]})
    df.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match=r"column 'G1' is not numeric \(spot 10x12"):
        import_counts(st, tmp_path / "x.csv")


def test_a_header_without_rows_is_refused(tmp_path):
    (tmp_path / "h.csv").write_text("spot_id,G0,G1\n")
    with pytest.raises(ValueError, match="no spots"):
        import_counts(_state(), tmp_path / "h.csv")
