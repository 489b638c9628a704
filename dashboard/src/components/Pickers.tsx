// The event, property-key and property-value pickers, fed by the explorer's pickers
// (event-names, property-keys, property-values).
import { useQuery } from '@tanstack/react-query';
import { listEventNames, listPropertyKeys, listPropertyValues } from '../api/query';
import { formatNumber } from '../format';
import { useProject } from '../project';
import { ComboInput } from './ComboInput';

const PICKER_STALE_MS = 60_000;

function useCounts(names: { name: string; count: number }[] | undefined) {
  const counts = new Map((names ?? []).map((n) => [n.name, n.count]));
  return {
    options: (names ?? []).map((n) => n.name),
    describe: (o: string) => (counts.has(o) ? `${formatNumber(counts.get(o))} events` : undefined),
  };
}

interface EventPickerProps {
  label?: string;
  value: string | null | undefined;
  onChange: (event: string | null) => void;
  /** An empty field means every event (the API's absent event). */
  allowAny?: boolean;
  hideLabel?: boolean;
  placeholder?: string;
}

export function EventPicker({ label = 'Event', value, onChange, allowAny = true, hideLabel, placeholder }: EventPickerProps) {
  const project = useProject();
  const q = useQuery({
    queryKey: ['event-names', project.id],
    queryFn: ({ signal }) => listEventNames(project.id, signal),
    staleTime: PICKER_STALE_MS,
  });
  const { options, describe } = useCounts(q.data?.results);
  return (
    <ComboInput
      label={label}
      hideLabel={hideLabel}
      value={value ?? ''}
      options={options}
      describe={describe}
      placeholder={placeholder ?? (allowAny ? 'All events' : 'Choose an event')}
      onCommit={(v) => onChange(v.trim() === '' ? null : v.trim())}
      className="picker-event"
    />
  );
}

interface PropertyKeyPickerProps {
  label?: string;
  value: string;
  onChange: (key: string) => void;
  /** Suggest the keys of this event only. */
  event?: string | null;
  hideLabel?: boolean;
  placeholder?: string;
}

export function PropertyKeyPicker({ label = 'Property', value, onChange, event, hideLabel, placeholder = 'Property' }: PropertyKeyPickerProps) {
  const project = useProject();
  const q = useQuery({
    queryKey: ['property-keys', project.id, event ?? null],
    queryFn: ({ signal }) => listPropertyKeys(project.id, event, signal),
    staleTime: PICKER_STALE_MS,
  });
  const { options, describe } = useCounts(q.data?.results);
  return (
    <ComboInput
      label={label}
      hideLabel={hideLabel}
      value={value}
      options={options}
      describe={describe}
      placeholder={placeholder}
      onCommit={(v) => onChange(v.trim())}
      className="picker-key"
    />
  );
}

interface PropertyValuePickerProps {
  label?: string;
  propertyKey: string;
  value: string;
  onChange: (value: string) => void;
  event?: string | null;
  hideLabel?: boolean;
}

export function PropertyValuePicker({ label = 'Value', propertyKey, value, onChange, event, hideLabel }: PropertyValuePickerProps) {
  const project = useProject();
  const q = useQuery({
    queryKey: ['property-values', project.id, propertyKey, event ?? null],
    queryFn: ({ signal }) => listPropertyValues(project.id, propertyKey, event, signal),
    enabled: propertyKey.trim() !== '',
    staleTime: PICKER_STALE_MS,
  });
  const { options, describe } = useCounts(q.data?.results);
  return (
    <ComboInput
      label={label}
      hideLabel={hideLabel}
      value={value}
      options={options}
      describe={describe}
      placeholder="Value"
      onCommit={onChange}
      className="picker-value"
    />
  );
}
