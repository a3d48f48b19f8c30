"""A forged WebSocket message cannot hand a page a choice its widgets never offered."""
import asyncio

from streamlit.proto.WidgetStates_pb2 import WidgetState

from .browser import dashboard

from benchmarks.streamlit_client import ProtocolSession


def test_choice_widgets_return_only_what_they_offered():
    from streamlit.elements.widgets.multiselect import MultiSelectSerde
    from streamlit.elements.widgets.radio import RadioSerde
    from streamlit.elements.widgets.selectbox import SelectboxSerde

    from lab_pages._audience import only_offered_choices

    only_offered_choices()
    options = [100, 500, 1000]
    mapping = {str(o): i for i, o in enumerate(options)}
    for serde_class in (SelectboxSerde, RadioSerde):
        serde = serde_class(options, formatted_options=list(mapping), formatted_option_to_option_index=mapping,
                            default_option_index=1)
        assert serde.deserialize("1000") == 1000 and serde.deserialize("1000000") == 500
    multi = MultiSelectSerde(options, formatted_options=list(mapping), formatted_option_to_option_index=mapping,
                             default_options_indices=[0])
    assert multi.deserialize(["1000", "../../etc", "100"]) == [1000, 100]
    wire = WidgetState()  # what the server really receives: a protobuf repeated field (iterable, no __iter__)
    wire.string_array_value.data.extend(["1000", "../../etc", "100"])
    assert multi.deserialize(wire.string_array_value.data) == [1000, 100]


def test_a_forged_message_gets_the_default_not_its_own_value(tmp_path):
    async def forge(url):
        page = ProtocolSession(url)
        await page.connect()
        try:
            await page.open("attack", {}, timeout_s=240)

            def offers_images(elements):
                return any(kind == "selectbox" and e.selectbox.label == "Test images" for kind, e in elements)

            await page.wait_for(offers_images, timeout_s=240)  # (a first visit's run may rerun before the page)
            assert not page.exceptions()
            [images] = [e.selectbox for kind, e in page.elements
                        if kind == "selectbox" and e.selectbox.label == "Test images"]
            [models] = [e.multiselect for kind, e in page.elements if kind == "multiselect"][:1]
            forged = [WidgetState(id=images.id, string_value="1000000")]
            forged.append(WidgetState(id=models.id))
            forged[-1].string_array_value.data.extend(["not-a-model-id"])
            await page.run(widgets=forged, timeout_s=240)
            await page.wait_for(offers_images, timeout_s=240)
            return page.exceptions(), [e.button.label for kind, e in page.elements if kind == "button"], page.texts()
        finally:
            await page.close()

    env = {"ROBUST_LECTURE_MODE": "1", "ROBUST_STORE_DIR": str(tmp_path / "store"), "ROBUST_SHIPPED_MODELS": "1"}
    with dashboard(env=env, timeout_s=120) as url:
        exceptions, buttons, texts = asyncio.run(forge(url))
    assert exceptions == []
    assert not any("1000000" in label for label in buttons), buttons
    assert not any("not-a-model-id" in text for text in texts)


def test_forged_values_of_the_wrong_type_or_not_finite_are_the_default():
    from streamlit.elements.widgets.multiselect import MultiSelectSerde
    from streamlit.elements.widgets.number_input import NumberInputSerde
    from streamlit.elements.widgets.selectbox import SelectboxSerde
    from streamlit.proto.NumberInput_pb2 import NumberInput as NumberInputProto

    from lab_pages._audience import only_offered_choices

    only_offered_choices()
    mapping = {"a": 0, "b": 1}
    select = SelectboxSerde(["a", "b"], formatted_options=list(mapping), formatted_option_to_option_index=mapping,
                            default_option_index=1)
    assert select.deserialize(["a"]) == "b" and select.deserialize(7) == "b"
    multi = MultiSelectSerde(["a", "b"], formatted_options=list(mapping), formatted_option_to_option_index=mapping,
                             default_options_indices=[0])
    assert multi.deserialize("a") == [] and multi.deserialize(["a", 3, ["b"]]) == ["a"]
    steps = NumberInputSerde(value=40, data_type=NumberInputProto.INT, min_value=1, max_value=1000)
    for forged in (float("nan"), float("inf"), -float("inf"), "12", True):
        assert steps.deserialize(forged) == 40
    assert steps.deserialize(12.0) == 12
